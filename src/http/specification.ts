// openapi.yaml, read once: the whole document for /docs, and the HTTP part for fastify-openapi-glue
// (WebSocket operations, marked x-websocket, are mounted by the WebSocket plugin instead).
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const specificationFile = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));
/** A built server reads the same document as JSON, converted by `npm run build` (no YAML parse at start). */
const builtSpecificationFile = import.meta.url.endsWith('.ts') ? undefined : fileURLToPath(new URL('../../openapi.json', import.meta.url));

type Operation = {
  'x-websocket'?: boolean;
  operationId?: string;
  security?: Record<string, string[]>[];
  requestBody?: { required?: boolean; content?: Record<string, unknown> };
};
export type OpenApiDocument = { paths: Record<string, Record<string, Operation | unknown>> } & Record<string, unknown>;

let cached: string | undefined;

/** A fresh copy of the whole document each call (callers change theirs), typed as the caller reads it. */
export function loadSpecification<Document extends object = OpenApiDocument>(): Document {
  cached ??= builtSpecificationFile && fs.existsSync(builtSpecificationFile) ? fs.readFileSync(builtSpecificationFile, 'utf8') : JSON.stringify(parse(fs.readFileSync(specificationFile, 'utf8')));
  return JSON.parse(cached) as Document;
}

export function loadHttpSpecification(): OpenApiDocument {
  const spec = loadSpecification();
  // Node lower-cases incoming header names and Fastify matches a header schema's properties to them
  // as written, so a header parameter spelled `Idempotency-Key` would never be validated.
  const lowerCaseHeader = (parameter: unknown) => {
    const p = parameter as Partial<ParameterObject> | undefined;
    if (p?.in === 'header' && typeof p.name === 'string') p.name = p.name.toLowerCase();
  };
  const components = spec.components as { parameters?: Record<string, unknown> } | undefined;
  for (const parameter of Object.values(components?.parameters ?? {})) lowerCaseHeader(parameter);
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const parameter of (item as { parameters?: unknown[] }).parameters ?? []) lowerCaseHeader(parameter);
    for (const [method, operation] of Object.entries(item)) {
      for (const parameter of (operation as { parameters?: unknown[] } | undefined)?.parameters ?? []) lowerCaseHeader(parameter);
      if ((operation as Operation)?.['x-websocket']) delete item[method];
    }
    if (Object.keys(item).every((key) => key === 'parameters' || key === 'summary' || key === 'description')) delete spec.paths[path];
  }
  return spec;
}

/** Operations that need an access token: their own `security`, else the document's. */
export function securedOperationIds(spec: OpenApiDocument): Set<string> {
  const global = (spec.security as Operation['security']) ?? [];
  const ids = new Set<string>();
  for (const item of Object.values(spec.paths)) {
    for (const operation of Object.values(item) as Operation[]) {
      if (!operation?.operationId) continue;
      const security = operation.security ?? global;
      if (security.length > 0 && security.every((requirement) => Object.keys(requirement).length > 0)) ids.add(operation.operationId);
    }
  }
  return ids;
}

/** What an operation's request body may be: the media types it declares, and whether it may be left out. */
export interface RequestBodyRule {
  required: boolean;
  mediaTypes: readonly string[];
}

/** The request body rule of every operation that declares a body (inline; openapi.yaml does not $ref them). */
export function requestBodyRules(spec: OpenApiDocument): Map<string, RequestBodyRule> {
  const rules = new Map<string, RequestBodyRule>();
  for (const item of Object.values(spec.paths)) {
    for (const operation of Object.values(item) as Operation[]) {
      if (!operation?.operationId || !operation.requestBody) continue;
      rules.set(operation.operationId, { required: operation.requestBody.required === true, mediaTypes: Object.keys(operation.requestBody.content ?? {}) });
    }
  }
  return rules;
}

type ParameterObject = { name: string; in: string; required?: boolean; schema?: object };
type MaybeRef<T> = T | { $ref: string };

/**
 * JSON schemas of an operation's path and query parameters, as openapi.yaml declares them: for routes
 * that fastify-openapi-glue does not mount (the WebSocket), so their input is checked by the contract too.
 */
export function parameterSchemas(spec: OpenApiDocument, pathTemplate: string, method: string): { params: object; query: object } {
  const item = spec.paths[pathTemplate] as ({ parameters?: MaybeRef<ParameterObject>[] } & Record<string, { parameters?: MaybeRef<ParameterObject>[] }>) | undefined;
  const operation = item?.[method];
  if (!item || !operation) throw new Error(`openapi.yaml has no ${method.toUpperCase()} ${pathTemplate}`);
  const components = (spec.components as { parameters?: Record<string, ParameterObject> } | undefined)?.parameters ?? {};
  const resolve = (parameter: MaybeRef<ParameterObject>): ParameterObject => {
    if (!('$ref' in parameter)) return parameter;
    const resolved = components[parameter.$ref.replace('#/components/parameters/', '')];
    if (!resolved) throw new Error(`openapi.yaml: unresolved ${parameter.$ref}`);
    return resolved;
  };
  const all = [...(item.parameters ?? []), ...(operation.parameters ?? [])].map(resolve);
  const schemaOf = (location: string) => {
    const parameters = all.filter((p) => p.in === location);
    return {
      type: 'object',
      properties: Object.fromEntries(parameters.map((p) => [p.name, p.schema ?? {}])),
      required: parameters.filter((p) => p.required).map((p) => p.name),
    };
  };
  return { params: schemaOf('path'), query: schemaOf('query') };
}
