import type { JobView } from '../../../libs/contracts/src';

/** Submits `echo hello from jobline` over REST, streams its log, and returns its final view. */
export async function runFirstJob(apiUrl: string, token: string, out: (s: string) => void): Promise<JobView> {
  const auth = { authorization: `Bearer ${token}` };
  const res = await fetch(`${apiUrl}/v1/jobs`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ command: 'echo hello from jobline' }),
  });
  if (res.status !== 201) throw new Error(`submitting the first job failed: ${res.status} ${await res.text()}`);
  const job = (await res.json()) as JobView;
  out(`first job ${job.id} submitted (${job.status}); its log:\n`);
  const logs = await fetch(`${apiUrl}/v1/jobs/${job.id}/logs?follow=true`, { headers: auth });
  if (!logs.ok || !logs.body) throw new Error(`following the log failed: ${logs.status} ${await logs.text()}`);
  const decoder = new TextDecoder();
  for await (const chunk of logs.body) out(`  | ${decoder.decode(chunk as Uint8Array, { stream: true }).replace(/\n(?=.)/g, '\n  | ')}`);
  const final = (await (await fetch(`${apiUrl}/v1/jobs/${job.id}`, { headers: auth })).json()) as JobView;
  out(`first job ${final.status} (exit code ${final.exitCode})\n`);
  return final;
}
