/**
 * The messages exchanged with the kernel over the `fiber_jupyter.control` comm.
 */

export const COMM_TARGET = 'fiber_jupyter.control';

/** Run-length worker states, e.g. [['busy', 30], ['idle', 2]]. */
export type WorkerRun = [state: string, count: number];

/** The bounds of a pool whose target follows its backlog, e.g. [1, 8]. */
export type AdaptBounds = [min: number, max: number];

export interface ICall {
  label: string;
  done: number;
  total: number;
  failed: number;
  retries: number;
  elapsed: number;
  rate: number;
  finished: boolean;
  text: string;
}

export interface IPool {
  name: string;
  backend: string;
  state: string;
  target: number;
  live: number;
  pending: number;
  busy: number;
  idle: number;
  lost: number;
  tasks_queued: number;
  tasks_running: number;
  tasks_done: number;
  /** Set while the pool adapts its size (`pool.adapt`), null while it is manual. */
  adapt: AdaptBounds | null;
  workers: WorkerRun[];
  call: ICall | null;
  log: string[];
}

/** The numeric fields shown as counts, in display order. */
export const WORKER_COUNTS = ['target', 'live', 'pending', 'busy', 'idle', 'lost'] as const;
export const TASK_COUNTS = ['tasks_queued', 'tasks_running', 'tasks_done'] as const;
export type CountKey = (typeof WORKER_COUNTS)[number] | (typeof TASK_COUNTS)[number];

export type KernelEvent =
  | { event: 'pools'; pools: IPool[] }
  | { event: 'scaled'; pool: string; target: number }
  | { event: 'adapted'; pool: string; adapt: AdaptBounds }
  | { event: 'shutdown'; pool: string }
  | { event: 'error'; message: string };

/** `scale` sets the size by hand, which ends adapting; `adapt` lets the pool size itself. */
export type Command =
  | { cmd: 'status' }
  | { cmd: 'scale'; pool: string; n: number }
  | { cmd: 'adapt'; pool: string; min: number; max: number }
  | { cmd: 'shutdown'; pool: string };

/**
 * Check the envelope of a comm message; the fields inside are trusted, since
 * the kernel side ships in the same package.
 */
export function parseEvent(data: unknown): KernelEvent | null {
  if (typeof data !== 'object' || data === null) {
    return null;
  }
  const event = data as { event?: unknown; pools?: unknown; message?: unknown };
  switch (event.event) {
    case 'pools':
      return Array.isArray(event.pools) ? (data as KernelEvent) : null;
    case 'error':
      return { event: 'error', message: String(event.message) };
    case 'scaled':
    case 'adapted':
    case 'shutdown':
      return data as KernelEvent;
    default:
      return null;
  }
}
