import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { Kernel, KernelMessage } from '@jupyterlab/services';

import { COMM_TARGET, Command, IPool, KernelEvent, parseEvent } from './protocol';

/** What the panel shows: a sentence, or the pools of the current kernel. */
export type View =
  | { kind: 'status'; text: string; canRetry: boolean }
  | { kind: 'pools'; pools: IPool[] };

export interface IConnectionListener {
  showView(view: View): void;
  /** Answers to commands: 'scaled', 'adapted', 'shutdown', 'timeline' and 'error'. */
  showEvent(event: KernelEvent): void;
}

export const STATUS = {
  noNotebook: 'No notebook: open one to see its pools.',
  noKernel: 'No kernel.',
  waiting: 'Waiting for the kernel…',
  restarted: 'Kernel restarted: reconnecting…',
  disconnected: 'Kernel disconnected: reconnecting…',
  dead: 'Kernel is dead: restart it to see its pools.',
  connecting: 'Connecting to fiber_jupyter…',
  notLoaded: 'fiber_jupyter is not loaded in this kernel: run %load_ext fiber_jupyter',
  noPools: 'No pools yet: run %fiber_pool'
};

/**
 * Follows the current notebook's kernel and owns the one control comm to it.
 *
 * Everything funnels into `sync()`, which compares the notebook, kernel and
 * comm against what they should be, so any signal may call it any number of
 * times.
 */
export class Connection {
  constructor(
    private readonly tracker: INotebookTracker,
    private readonly listener: IConnectionListener
  ) {
    tracker.currentChanged.connect(this.follow, this);
    this.follow();
  }

  send(command: Command): void {
    try {
      if (!this.comm) {
        throw new Error('not connected to the kernel');
      }
      this.comm.send(command);
    } catch (error) {
      this.listener.showEvent({ event: 'error', message: `Cannot send: ${reason(error)}` });
    }
  }

  retry(): void {
    this.notLoaded = false;
    this.sync();
  }

  private follow(): void {
    const notebook = this.tracker.currentWidget;
    if (notebook === this.notebook) {
      return;
    }
    const old = this.notebook?.sessionContext;
    if (old) {
      old.kernelChanged.disconnect(this.sync, this);
      old.statusChanged.disconnect(this.sync, this);
      old.connectionStatusChanged.disconnect(this.sync, this);
      old.iopubMessage.disconnect(this.onIOPub, this);
    }
    this.notebook = notebook;
    const context = notebook?.sessionContext;
    if (context) {
      context.kernelChanged.connect(this.sync, this);
      context.statusChanged.connect(this.sync, this);
      context.connectionStatusChanged.connect(this.sync, this);
      context.iopubMessage.connect(this.onIOPub, this);
      // Ends 'initializing' even when no kernel starts, which no other signal tells.
      void context.ready.then(() => this.sync());
    }
    this.sync();
  }

  private sync(): void {
    const context = this.notebook?.sessionContext;
    const kernel = context?.session?.kernel ?? null;
    if (kernel !== this.kernel) {
      this.dropComm(true);
      this.kernel = kernel;
      this.notLoaded = false;
      this.lost = null;
    }
    if (!context) {
      return this.setStatus(STATUS.noNotebook);
    }
    if (!kernel) {
      const starting = context.kernelDisplayStatus === 'initializing';
      return this.setStatus(starting ? STATUS.waiting : STATUS.noKernel);
    }
    const problem = this.problem(kernel);
    if (problem) {
      // The kernel-side comm died with the restart, or the kernel cannot be reached.
      this.dropComm(false);
      this.notLoaded = false;
      return this.setStatus(problem);
    }
    if (this.comm) {
      return;
    }
    if (this.notLoaded) {
      return this.setStatus(STATUS.notLoaded, true);
    }
    this.open(kernel);
  }

  /**
   * Why the kernel cannot take a comm now, or null if it can. Remembers a
   * restart or lost connection, so that is what the panel says until it is back.
   */
  private problem(kernel: Kernel.IKernelConnection): string | null {
    const { status, connectionStatus } = kernel;
    if (status === 'dead') {
      return STATUS.dead;
    }
    if (status === 'restarting' || status === 'autorestarting') {
      this.lost = STATUS.restarted;
    } else if (connectionStatus !== 'connected' && this.comm) {
      this.lost = STATUS.disconnected;
    }
    if (connectionStatus === 'connected' && (status === 'idle' || status === 'busy')) {
      this.lost = null;
      return null;
    }
    return this.lost ?? STATUS.waiting;
  }

  private open(kernel: Kernel.IKernelConnection): void {
    let answered = false;
    try {
      const comm = kernel.createComm(COMM_TARGET);
      this.comm = comm;
      // Callbacks of a comm we have since dropped must stay silent.
      comm.onMsg = msg => {
        if (comm === this.comm) {
          answered = true;
          this.receive(msg.content.data);
        }
      };
      comm.onClose = () => {
        if (comm === this.comm) {
          // ipykernel closes a comm to an unknown target without a word.
          this.comm = null;
          this.notLoaded = !answered;
          this.sync();
        }
      };
      this.setStatus(STATUS.connecting);
      comm.open({});
    } catch (error) {
      this.comm = null;
      this.setStatus(`Cannot connect to the kernel: ${reason(error)}`, true);
    }
  }

  private receive(data: unknown): void {
    const event = parseEvent(data);
    if (event?.event === 'pools') {
      this.view = null;
      this.listener.showView({ kind: 'pools', pools: event.pools });
    } else if (event) {
      this.listener.showEvent(event);
    }
  }

  /**
   * Once the user has run a cell (perhaps `%load_ext fiber_jupyter`), try the
   * missing target again. Only cells count: the idle state that follows our own
   * comm_open would otherwise retry a missing target forever.
   */
  private onIOPub(_: unknown, msg: KernelMessage.IMessage): void {
    if (
      this.notLoaded &&
      msg.header.msg_type === 'status' &&
      (msg as KernelMessage.IStatusMsg).content.execution_state === 'idle' &&
      (msg.parent_header as Partial<KernelMessage.IHeader>).msg_type === 'execute_request'
    ) {
      this.retry();
    }
  }

  /**
   * Forget the comm. `close` also tells the kernel, when we leave one that still
   * runs; after a restart there is no kernel-side comm left to close.
   */
  private dropComm(close: boolean): void {
    const comm = this.comm;
    this.comm = null;
    if (!comm || comm.isDisposed) {
      return;
    }
    try {
      if (close) {
        comm.close();
      } else {
        comm.dispose();
      }
    } catch {
      // The kernel is already gone: nothing to tell it.
      comm.dispose();
    }
  }

  /** Show a sentence; repeats are skipped so busy/idle churn costs nothing. */
  private setStatus(text: string, canRetry = false): void {
    if (this.view?.text !== text) {
      this.view = { kind: 'status', text, canRetry };
      this.listener.showView(this.view);
    }
  }

  private notebook: NotebookPanel | null = null;
  private kernel: Kernel.IKernelConnection | null = null;
  private comm: Kernel.IComm | null = null;
  /** The kernel closed our comm without answering: the target is missing. */
  private notLoaded = false;
  /** Why a working connection went away, shown until the kernel is back. */
  private lost: string | null = null;
  /** The sentence on show, or null while pools are shown. */
  private view: (View & { kind: 'status' }) | null = null;
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
