// Request validation compiled from openapi.yaml's schemas. Bodies are checked strictly: unknown
// fields are rejected, not silently dropped, and "3" is not a number. Path and query parameters
// arrive as strings, so they are coerced (and a lone ?status=x becomes a one-item array).
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import formats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

function makeAjv(coerceTypes: Options['coerceTypes']): Ajv {
  const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: false, allErrors: true, strict: true, strictRequired: false, strictTypes: false });
  // ajv-formats is CommonJS: under NodeNext its default export is the module object.
  formats.default(ajv);
  return ajv;
}

const bodyAjv = makeAjv(false);
const parameterAjv = makeAjv('array');

export const validatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  httpPart === 'body' ? storableBody(bodyAjv.compile(schema)) : parameterAjv.compile(schema);

/** The parameter validator for routes outside fastify-openapi-glue (coerces, fills in defaults). */
export function compileParameters<T>(schema: object): ValidateFunction<T> {
  return parameterAjv.compile<T>(schema);
}

/**
 * PostgreSQL text cannot hold U+0000, so a body string carrying it is refused here, pointing at it,
 * instead of failing in SQL after the request was accepted. (Parameters are uuids, enums, numbers and
 * cursors, whose own checks exclude it.)
 */
function storableBody(validate: ValidateFunction) {
  const check = (data: unknown): boolean => {
    const valid = validate(data);
    const nul = stringsWithNul(data, '').map((instancePath): ErrorObject => ({ instancePath, schemaPath: '', keyword: 'nul', params: {}, message: 'must not contain a NUL character' }));
    check.errors = [...(validate.errors ?? []), ...nul];
    return valid && nul.length === 0;
  };
  check.errors = [] as ErrorObject[];
  return check;
}

function stringsWithNul(value: unknown, path: string): string[] {
  if (typeof value === 'string') return value.includes('\u0000') ? [path] : [];
  if (Array.isArray(value)) return value.flatMap((item, index) => stringsWithNul(item, `${path}/${index}`));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => stringsWithNul(item, `${path}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`));
  }
  return [];
}
