import { z } from 'zod';
import { parsePastInstant, parseWith, ValidationError } from '../../../../libs/contracts/src';

/** Validates a query string object; unknown parameters are refused like unknown body fields. */
export function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.output<S> {
  const parsed = parseWith(schema, query ?? {});
  if (!parsed.ok) throw new ValidationError('invalid query parameters', parsed.issues);
  return parsed.value;
}

/** How a query parameter is documented in the OpenAPI document (its value as a client writes it). */
export interface QueryParamDoc {
  /** JSON Schema of the value. */
  schema: Record<string, unknown>;
  /** OpenAPI `style`/`explode` for lists: comma-separated (repeating the parameter is accepted too). */
  list?: boolean;
}

/**
 * Query parameters arrive as strings and are transformed (to numbers, lists); the JSON
 * Schema of such a zod pipeline would describe only the raw string. Each helper below
 * records here what the value means, from the same bounds it validates with, and the
 * OpenAPI document reads it.
 */
export const queryParamDocs = z.registry<QueryParamDoc>();

/** A decimal integer parameter within [min, max]. */
export const intParam = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,16}$/, 'must be a non-negative decimal integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max))
    .register(queryParamDocs, { schema: { type: 'integer', minimum: min, maximum: max } });

/** `a,b` or `x=a&x=b`: a list of allowed values. */
export const listParam = <T extends string>(values: readonly T[]) =>
  z
    .union([z.string(), z.array(z.string())])
    .transform(splitList)
    .pipe(z.array(z.enum(values as unknown as [T, ...T[]])).min(1, `expected one or more of ${values.join(', ')}`))
    .register(queryParamDocs, { schema: { type: 'array', items: { type: 'string', enum: [...values] }, minItems: 1 }, list: true });

/** `a,b` or `x=a&x=b`: a list of values that each match `item` (at most `max`). */
export const listOfParam = (item: z.ZodString, max: number) =>
  z
    .union([z.string(), z.array(z.string())])
    .transform(splitList)
    .pipe(z.array(item).min(1, 'expected one or more values').max(max))
    .register(queryParamDocs, { schema: { type: 'array', items: bareJsonSchema(item), minItems: 1, maxItems: max }, list: true });

/** An ISO-8601 date-time with a zone, as epoch ms. */
export const instantParam = () =>
  z
    .iso.datetime({ offset: true, message: 'must be an ISO-8601 date-time with a zone, e.g. 2025-01-31T12:00:00Z' })
    .transform((s) => Date.parse(s))
    .register(queryParamDocs, { schema: { type: 'string', format: 'date-time' } });

/**
 * `at=`: an RFC 3339 instant between the Unix epoch and now (the server's clock), as epoch
 * ms. Anything else is a 400 that says why; nothing is rounded, rolled over or clamped.
 */
export const pastInstantParam = (now: () => number = Date.now) =>
  z
    .string()
    .transform((text, ctx) => {
      const parsed = parsePastInstant(text, now());
      if (parsed.ok) return parsed.ms;
      ctx.addIssue({ code: 'custom', message: parsed.message });
      return z.NEVER;
    })
    .register(queryParamDocs, { schema: { type: 'string', format: 'date-time' } });

export const boolParam = z
  .enum(['true', 'false', '1', '0'])
  .transform((v) => v === 'true' || v === '1')
  .register(queryParamDocs, { schema: { type: 'boolean' } });

function bareJsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema) as Record<string, unknown>;
  return rest;
}

function splitList(v: string | string[]): string[] {
  return (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
}
