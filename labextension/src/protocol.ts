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

/** The worker using the most memory, e.g. "most memory: w3, 96 MiB, cpu 99 %". */
export interface IHeaviest {
  worker_id: string;
  cpu_percent: number | null;
  memory_bytes: number;
  text: string;
}

/**
 * What the workers last reported: sums over those that did (`reporting`), null
 * while none has. 100 % cpu is one core. The kernel words `text` itself, so
 * the panel and the widget in the notebook say the same thing.
 */
export interface IUsage {
  cpu_percent: number | null;
  memory_bytes: number | null;
  reporting: number;
  text: string;
  heaviest: IHeaviest | null;
  /** Per worker state, its workers' range, e.g. {busy: "cpu 95–99 % · memory 80–96 MiB"}. */
  by_state: Record<string, string>;
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
  usage: IUsage;
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
  /** The picture of the pool's recent batches per worker, drawn by the kernel. */
  | { event: 'timeline'; pool: string; svg: string }
  | { event: 'error'; message: string };

/** `scale` sets the size by hand, which ends adapting; `adapt` lets the pool size itself. */
export type Command =
  | { cmd: 'status' }
  | { cmd: 'scale'; pool: string; n: number }
  | { cmd: 'adapt'; pool: string; min: number; max: number }
  | { cmd: 'shutdown'; pool: string }
  /** `width`: pixels, 200 to 4000; the kernel draws 900 without it. */
  | { cmd: 'timeline'; pool: string; width?: number };

/**
 * Check the envelope of a comm message; the fields inside are trusted, since
 * the kernel side ships in the same package.
 */
export function parseEvent(data: unknown): KernelEvent | null {
  if (typeof data !== 'object' || data === null) {
    return null;
  }
  const event = data as { event?: unknown; pools?: unknown; message?: unknown; svg?: unknown };
  switch (event.event) {
    case 'pools':
      return Array.isArray(event.pools) ? (data as KernelEvent) : null;
    case 'error':
      return { event: 'error', message: String(event.message) };
    case 'timeline':
      // Without its picture, the answer would show as a broken image.
      return typeof event.svg === 'string' ? (data as KernelEvent) : null;
    case 'scaled':
    case 'adapted':
    case 'shutdown':
      return data as KernelEvent;
    default:
      return null;
  }
}
