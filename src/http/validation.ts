// Request validation compiled from openapi.yaml's schemas. Bodies are checked strictly: unknown
// fields are rejected, not silently dropped, and "3" is not a number. Path and query parameters
// arrive as strings, so they are coerced (and a lone ?status=x becomes a one-item array).
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import formats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

type FastifyValidationResult = ReturnType<FastifySchemaCompiler<object>>;

function makeAjv(coerceTypes: Options['coerceTypes']): Ajv {
  const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: false, allErrors: true, strict: true, strictRequired: false, strictTypes: false });
  // ajv-formats is CommonJS: under NodeNext its default export is the module object.
  formats.default(ajv);
  return ajv;
}

const bodyAjv = makeAjv(false);
const parameterAjv = makeAjv('array');

export const validatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  onFirstUse(() => (httpPart === 'body' ? storableBody(bodyAjv.compile(schema)) : finiteParameters(parameterAjv.compile(schema))));

/**
 * Compiled when its route is first asked, not at start: compiling every schema of the contract was
 * the largest part of building the API (the startup bench), and each costs a request only a few
 * milliseconds, once. The contract tests ask every operation, so a schema ajv refuses still fails them.
 */
function onFirstUse(compile: () => FastifyValidationResult): FastifyValidationResult {
  let compiled: FastifyValidationResult | undefined;
  const check: FastifyValidationResult = (data: unknown) => {
    compiled ??= compile();
    const result = compiled(data);
    check.errors = compiled.errors ?? null;
    return result;
  };
  check.errors = null;
  return check;
}

/** The parameter validator for routes outside fastify-openapi-glue (coerces, fills in defaults). */
export function compileParameters<T>(schema: object): ValidateFunction<T> {
  return finiteParameters(parameterAjv.compile<T>(schema));
}

/**
 * ajv coerces "1e400" to Infinity and then lets it pass both `integer` and `maximum` (it checks a
 * coerced value for its type only), so a parameter the contract bounds would reach SQL unbounded.
 */
function finiteParameters<T>(validate: ValidateFunction<T>): ValidateFunction<T> {
  const check = ((data: unknown): boolean => {
    const valid = validate(data);
    const infinite = Object.entries(data !== null && typeof data === 'object' ? data : {})
      .filter(([, value]) => typeof value === 'number' && !Number.isFinite(value))
      .map(([name]): ErrorObject => ({ instancePath: `/${name}`, schemaPath: '', keyword: 'finite', params: {}, message: 'must be a finite number' }));
    check.errors = [...(validate.errors ?? []), ...infinite];
    return valid && infinite.length === 0;
  }) as ValidateFunction<T>;
  check.errors = null;
  check.schema = validate.schema;
  check.schemaEnv = validate.schemaEnv;
  return check;
}

/**
 * PostgreSQL text cannot hold U+0000, and a lone UTF-16 surrogate (`"\ud800"`, which JSON.parse accepts)
 * is stored as U+FFFD, silently altered. A body string carrying either is refused here, pointing at it,
 * instead of failing in SQL or being stored changed. openapi.yaml's patterns exclude NUL too; the
 * sentence here is clearer than the pattern's, so it replaces the pattern complaint at that field.
 */
function storableBody(validate: ValidateFunction) {
  const check = (data: unknown): boolean => {
    const valid = validate(data);
    const unstorable = unstorableStrings(data, '').map(
      ({ instancePath, message }): ErrorObject => ({ instancePath, schemaPath: '', keyword: 'storable', params: {}, message }),
    );
    const flagged = new Set(unstorable.map((e) => e.instancePath));
    const schemaErrors = (validate.errors ?? []).filter((e) => !(e.keyword === 'pattern' && flagged.has(e.instancePath)));
    check.errors = [...schemaErrors, ...unstorable];
    return valid && unstorable.length === 0;
  };
  check.errors = [] as ErrorObject[];
  return check;
}

// In a `u` regular expression a surrogate pair is one code point, so only an unpaired half matches.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function unstorableStrings(value: unknown, path: string): { instancePath: string; message: string }[] {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) return [{ instancePath: path, message: 'must not contain a NUL character' }];
    if (LONE_SURROGATE.test(value)) return [{ instancePath: path, message: 'must be well-formed Unicode (it holds a lone surrogate)' }];
    return [];
  }
  if (Array.isArray(value)) return value.flatMap((item, index) => unstorableStrings(item, `${path}/${index}`));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => {
      const at = `${path}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
      // A key is no string we store, but it is echoed in problems and logs: the same rule keeps them clean.
      const keyProblem = unstorableStrings(key, at);
      return keyProblem.length > 0 ? keyProblem : unstorableStrings(item, at);
    });
  }
  return [];
}
