import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { AttemptOutput } from './attempt-output';

/** Keeps the event loop busy: no I/O is read meanwhile, while timers fall due. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('AttemptOutput: what an exited process left in its pipes', () => {
  it('is read whole by a consumer slower than drainMs: a pipe is quiet when it has nothing to give, not when nobody asks', async () => {
    // The process exits with the last of its output still in the pipe; the consumer (the log
    // batcher waiting for JetStream) takes a chunk every 100 ms, five times drainMs.
    const child = spawn('sh', ['-c', 'head -c 300000 /dev/zero'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new AttemptOutput({ stdout: child.stdout, stderr: child.stderr }, 20);
    void once(child, 'exit').then(() => out.cutWhenQuiet());
    let bytes = 0;
    for await (const chunk of out.stdout) {
      bytes += chunk.byteLength;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    for await (const chunk of out.stderr) void chunk;
    expect(bytes).toBe(300_000);
  });

  it('is read whole when the loop was too busy to read the pipe before the quiet check fell due', async () => {
    const child = spawn('sh', ['-c', 'head -c 300000 /dev/zero'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new AttemptOutput({ stdout: child.stdout, stderr: child.stderr }, 20);
    let exited = false;
    void once(child, 'exit').then(() => {
      exited = true;
      out.cutWhenQuiet();
    });
    let bytes = 0;
    let blocked = false;
    for await (const chunk of out.stdout) {
      bytes += chunk.byteLength;
      if (!exited) await new Promise((ok) => setTimeout(ok, 20));
      else if (!blocked) {
        // Busy past drainMs right after taking what was buffered (a synchronous fsync elsewhere
        // in the executor, a long GC): the quiet check then runs before the pipe is read again,
        // and must not take "nothing buffered" for "nothing left".
        blocked = true;
        busy(100);
      }
    }
    for await (const chunk of out.stderr) void chunk;
    expect(bytes).toBe(300_000);
  });

  it('still cuts a pipe held open by a process that left, once nothing comes for drainMs', async () => {
    // The shell exits; the background sleep keeps stdout open and writes nothing.
    const child = spawn('sh', ['-c', 'echo hi; sleep 30 & exit 0'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out = new AttemptOutput({ stdout: child.stdout, stderr: child.stderr }, 50);
    const t0 = performance.now();
    const read = (async () => {
      let text = '';
      for await (const chunk of out.stdout) text += Buffer.from(chunk).toString();
      for await (const chunk of out.stderr) void chunk;
      return text;
    })();
    await once(child, 'exit');
    out.cutWhenQuiet();
    const text = await read;
    expect(text).toBe('hi\n');
    expect(performance.now() - t0).toBeLessThan(5_000);
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone already
    }
  });
});

describe('AttemptOutput: the quiet rule', () => {
  it('does not cut a pipe while its reader is busy with a chunk, however long: output comes late only because nobody asked', async () => {
    const { PassThrough } = await import('node:stream');
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    stderr.end();
    const out = new AttemptOutput({ stdout, stderr }, 20);
    stdout.write('first\n');
    out.cutWhenQuiet();
    let text = '';
    let n = 0;
    for await (const chunk of out.stdout) {
      text += Buffer.from(chunk).toString();
      if (n++ === 0) {
        // The reader holds the first chunk for five times drainMs; the rest comes meanwhile.
        setTimeout(() => stdout.end('second\n'), 80);
        await new Promise((ok) => setTimeout(ok, 100));
      }
    }
    expect(text).toBe('first\nsecond\n');
  });
});
