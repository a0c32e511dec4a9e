import { z } from 'zod';
import { parseWith, ValidationError } from '../../../../libs/contracts/src';

/** Validates a query string object; unknown parameters are refused like unknown body fields. */
export function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.output<S> {
  const parsed = parseWith(schema, query ?? {});
  if (!parsed.ok) throw new ValidationError('invalid query parameters', parsed.issues);
  return parsed.value;
}

/** A decimal integer parameter within [min, max]. */
export const intParam = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,16}$/, 'must be a non-negative decimal integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

/** `a,b` or `x=a&x=b`: a list of allowed values. */
export const listParam = <T extends string>(values: readonly T[]) =>
  z
    .union([z.string(), z.array(z.string())])
    .transform((v) => (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== ''))
    .pipe(z.array(z.enum(values as unknown as [T, ...T[]])).min(1, `expected one or more of ${values.join(', ')}`));

export const boolParam = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
