// The JSON body parser: Fastify's own (secure-json-parse, refusing prototype-poisoning keys), with the
// checks it lacks. It reads bytes, not a string, because decoding would turn invalid UTF-8 into U+FFFD
// and the body would be stored altered; it bounds nesting before parsing, because a body nested
// thousands deep reaches the recursive code after the parser (validation, the NUL check) and fails
// there with a stack overflow; and it says which of its rules a refused body broke.
import { isUtf8 } from 'node:buffer';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { InvalidArgumentError } from '../errors.js';

/** Deeper than any body openapi.yaml describes (two levels), far shallower than the stack allows. */
export const MAX_JSON_DEPTH = 32;

type Done = (err: Error | null, body?: unknown) => void;
type StringParser = (request: FastifyRequest, body: string, done: Done) => void;

/** Registers the strict parser for every JSON media type the API reads (replacing Fastify's default). */
export function registerJsonBodyParser(app: FastifyInstance, mediaTypes: readonly string[]): void {
  const secureParse = app.getDefaultJsonParser('error', 'error') as StringParser;
  for (const mediaType of mediaTypes) {
    if (app.hasContentTypeParser(mediaType)) app.removeContentTypeParser(mediaType);
    app.addContentTypeParser(mediaType, { parseAs: 'buffer' }, (request, raw: Buffer, done: Done) => {
      if (raw.length === 0) return done(new InvalidArgumentError('The request body is empty; send a JSON object', [{ pointer: '/', message: 'is required' }]));
      if (!isUtf8(raw)) return done(new InvalidArgumentError('The request body is not valid UTF-8'));
      const text = raw.toString('utf8');
      if (nestedDeeperThan(text, MAX_JSON_DEPTH)) {
        return done(new InvalidArgumentError(`The request body is nested more than ${MAX_JSON_DEPTH} levels deep`));
      }
      secureParse(request, text, (err, body) => (err ? done(explainRefusal(text)) : done(null, body)));
    });
  }
}

/** Why secure-json-parse refused `text`: a syntax error (JSON.parse says where), else a poisoning key. */
function explainRefusal(text: string): InvalidArgumentError {
  try {
    JSON.parse(text);
  } catch (err) {
    return new InvalidArgumentError(`The request body is not valid JSON: ${(err as SyntaxError).message}`);
  }
  return new InvalidArgumentError('The request body has a "__proto__" or "constructor.prototype" key, which is not accepted');
}

/** True when brackets outside strings nest deeper than `limit`: one pass, no recursion. */
export function nestedDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next character, a quote among them
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}
