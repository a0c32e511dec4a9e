import { z } from 'zod';

/** Limits that keep a single submission from swamping the system. */
export const SPEC_LIMITS = {
  argvItems: 4096,
  argBytes: 128 * 1024,
  scriptBytes: 256 * 1024,
  envEntries: 256,
  steps: 100,
  dataItems: 100,
  outputs: 100,
  timeoutSeconds: 7 * 24 * 3600,
  maxAttempts: 10,
  notify: 5,
  notifyUrlBytes: 2048,
} as const;

const noNul = (s: string) => !s.includes('\u0000');

/** A path that stays inside the job's workspace: relative, no '..' segment, no NUL. */
export const RelativePath = z
  .string()
  .min(1)
  .max(1024)
  .refine(noNul, 'must not contain NUL')
  .refine((p) => !p.startsWith('/'), 'must be a relative path')
  .refine((p) => !p.split(/[\\/]/).includes('..'), "must not contain a '..' segment");

export const Priority = z.enum(['low', 'normal', 'high']);
export type Priority = z.infer<typeof Priority>;

const Arg = z.string().max(SPEC_LIMITS.argBytes).refine(noNul, 'must not contain NUL');

export const Command = z.union([
  z
    .array(Arg)
    .min(1, 'command must not be empty')
    .max(SPEC_LIMITS.argvItems)
    // zod runs refinements even after .min(1) failed: an empty argv must not reach argv[0].
    .refine((argv) => argv.length === 0 || argv[0].trim().length > 0, 'command[0] must name a program'),
  z
    .string()
    .max(SPEC_LIMITS.scriptBytes)
    .refine(noNul, 'must not contain NUL')
    .refine((s) => s.trim().length > 0, 'command must not be empty'),
]);

/** `outputs` globs: relative to the workspace, never leaving it (README "Outputs and artifacts"). */
export const OutputGlobs = z
  .array(
    z
      .string()
      .min(1)
      .max(1024)
      .refine(noNul, 'must not contain NUL')
      .refine((g) => !g.startsWith('/') && !g.includes('\\') && !/(^|[/{,])\.\.($|[/},])/.test(g), "must be a relative glob without '..' or backslashes")
      .refine((g) => !g.startsWith('!'), "must not start with '!': negation is not supported, name the files to keep"),
  )
  .max(SPEC_LIMITS.outputs);

/** One stage of a staged job (README "Staged pipelines"). */
export const Step = z.strictObject({
  name: z.string().min(1).max(200).refine(noNul, 'must not contain NUL'),
  run: z
    .string()
    .max(SPEC_LIMITS.scriptBytes)
    .refine(noNul, 'must not contain NUL')
    .refine((s) => s.trim().length > 0, 'run must not be empty'),
  /** Since JobSubmitted v3: a failure of this step is recorded, and the next steps run; it does not fail the job. */
  continueOnFailure: z.boolean().optional(),
  /** Since JobSubmitted v3: files collected right after this step ends, before the next one starts (README "Staged pipelines"). */
  outputs: OutputGlobs.optional(),
});

export const Resources = z.strictObject({
  /** Fraction of cores, e.g. 0.5 or 2. */
  cpu: z.number().positive().max(1024).optional(),
  memoryMb: z.number().int().min(4).max(4 * 1024 * 1024).optional(),
  pids: z.number().int().min(1).max(4_194_304).optional(),
  ioReadBps: z.number().int().positive().optional(),
  ioWriteBps: z.number().int().positive().optional(),
  network: z.boolean().optional(),
});

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');

export const Source = z.union([
  z.strictObject({
    git: z.strictObject({
      url: z.string().min(1).max(2048),
      commit: z.string().regex(/^([0-9a-f]{40}|[0-9a-f]{64})$/, 'must be a full commit hash (40 or 64 hex digits)'),
    }),
  }),
  z.strictObject({ archive: z.literal(true) }),
]);

export const DataItem = z.strictObject({
  url: z.string().url().max(2048),
  path: RelativePath,
  sha256: Sha256.optional(),
});

/**
 * A webhook target: an absolute http(s) URL without credentials or fragment. Whether http and
 * private addresses are allowed is the deployment's decision, taken (and recorded) at delivery.
 */
export const NotifyUrl = z
  .string()
  .min(1)
  .max(SPEC_LIMITS.notifyUrlBytes)
  .refine(noNul, 'must not contain NUL')
  .superRefine((url, ctx) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be an absolute URL such as https://hooks.example.com/jobline' });
      return;
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') ctx.addIssue({ code: 'custom', message: `scheme ${u.protocol} is not allowed: use https:// (http:// only where the deployment allows it)` });
    else if (!u.hostname) ctx.addIssue({ code: 'custom', message: 'must name a host' });
    if (u.username || u.password) ctx.addIssue({ code: 'custom', message: 'must not carry credentials: deliveries are signed instead' });
    if (u.hash) ctx.addIssue({ code: 'custom', message: 'must not have a #fragment' });
  });

/** Told when the job ends (README "Webhooks"). */
export const NotifyTarget = z.strictObject({ url: NotifyUrl });

export const Retry = z.strictObject({
  maxAttempts: z.number().int().min(1).max(SPEC_LIMITS.maxAttempts),
  backoffSeconds: z.number().min(0).max(3600).default(0),
});

/**
 * Refuses an own key `__proto__` in a record. JSON.parse (and proto-loader's maps) keep it as
 * an own key, but zod's record skips it on purpose (assigning it would set the prototype), so
 * it vanished and the request was answered 201 without it. `constructor` and `prototype` are
 * ordinary own keys that parse and run like any other, so they are kept.
 * The JSON Schema is unchanged (a preprocess is invisible there); the type stays the record's.
 */
export function refuseProtoKey<S extends z.ZodType>(schema: S): S {
  return z.preprocess((value, ctx) => {
    if (value !== null && typeof value === 'object' && Object.prototype.hasOwnProperty.call(value, '__proto__')) {
      ctx.issues.push({ code: 'custom', message: '"__proto__" cannot be used as a key: JavaScript objects cannot hold it as an entry', path: ['__proto__'], input: value });
    }
    return value;
  }, schema) as unknown as S;
}

export const Target = z.strictObject({
  executor: z.enum(['local', 'ssh']).optional(),
  host: z.string().min(1).max(253).optional(),
  labels: refuseProtoKey(z.record(z.string().max(63), z.string().max(255))).optional(),
});

const EnvKey = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be a valid environment variable name');

/** What a user asks Jobline to run. Unknown fields are refused, not ignored. */
export const JobSpecSchema = z
  .strictObject({
    command: Command.optional(),
    steps: z.array(Step).min(1).max(SPEC_LIMITS.steps).optional(),
    env: refuseProtoKey(
      z
        .record(EnvKey, z.string().max(SPEC_LIMITS.argBytes).refine(noNul, 'must not contain NUL'))
        .refine((e) => Object.keys(e).length <= SPEC_LIMITS.envEntries, `at most ${SPEC_LIMITS.envEntries} entries`),
    ).optional(),
    workdir: RelativePath.optional(),
    priority: Priority.default('normal'),
    timeoutSeconds: z.number().int().min(1).max(SPEC_LIMITS.timeoutSeconds).optional(),
    resources: Resources.optional(),
    source: Source.optional(),
    data: z.array(DataItem).max(SPEC_LIMITS.dataItems).optional(),
    outputs: OutputGlobs.optional(),
    retry: Retry.optional(),
    target: Target.optional(),
    notify: z
      .array(NotifyTarget)
      .min(1)
      .max(SPEC_LIMITS.notify)
      .refine((ts) => new Set(ts.map((t) => t.url)).size === ts.length, 'the same URL is listed twice')
      .optional(),
  })
  .superRefine((spec, ctx) => {
    if ((spec.command === undefined) === (spec.steps === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'exactly one of command or steps is required', path: ['command'] });
    }
  });

export type JobSpec = z.output<typeof JobSpecSchema>;
export type JobSpecInput = z.input<typeof JobSpecSchema>;

/** One problem found in an input, addressed by its JSON path. */
export interface FieldIssue {
  path: string;
  message: string;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; issues: FieldIssue[] };

/** Validates anything that claims to be a schema's input; never throws. */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown): Parsed<z.output<S>> {
  const result = schema.safeParse(input);
  if (result.success) return { ok: true, value: result.data };
  return {
    ok: false,
    issues: result.error.issues.map((i) => ({
      path: i.path.length ? i.path.map(String).join('.') : '(root)',
      message: i.message,
    })),
  };
}

export const parseJobSpec = (input: unknown): Parsed<JobSpec> => parseWith(JobSpecSchema, input);
