/**
 * Every path parameter is a uuid, and openapi.yaml's uuid format takes either letter case; ids are
 * stored and compared in lower case (organisation ids in the caller's token among them), so an id in
 * upper case names the same object instead of answering 404.
 */
export function lowerCaseIds<T extends object>(params: T): T {
  return Object.fromEntries(Object.entries(params).map(([name, value]) => [name, typeof value === 'string' ? value.toLowerCase() : value])) as T;
}
