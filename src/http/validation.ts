// Request validation compiled from openapi.yaml's schemas. Bodies are checked strictly: unknown
// fields are rejected, not silently dropped, and "3" is not a number. Path and query parameters
// arrive as strings, so they are coerced (and a lone ?status=x becomes a one-item array).
import { Ajv, type Options } from 'ajv';
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
  (httpPart === 'body' ? bodyAjv : parameterAjv).compile(schema);
