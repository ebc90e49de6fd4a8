import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { Connection } from './connection';
import { FiberPanel } from './panel';

/** Three strands; `jp-icon3` on the stroked group lets the theme pick the colour. */
const fiberIcon = new LabIcon({
  name: 'fiber-jupyter:fiber',
  svgstr: `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24" fill="none">
  <g class="jp-icon3" stroke="#616161" stroke-width="2" stroke-linecap="round">
    <path d="M3 6c6 0 6 12 18 12"/><path d="M3 12h18"/><path d="M3 18c6 0 6-12 18-12"/>
  </g>
</svg>`
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'fiber-jupyter:panel',
  description: "A side panel with the process pools of the current notebook's kernel.",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    restorer: ILayoutRestorer | null
  ) => {
    // The panel calls these only on user actions, once `connection` exists.
    const panel = new FiberPanel({
      send: command => connection.send(command),
      retry: () => connection.retry()
    });
    panel.title.icon = fiberIcon;
    panel.title.caption = 'Fiber';
    const connection = new Connection(tracker, panel);
    app.shell.add(panel, 'left', { rank: 900 });
    // Reopens the panel after a page reload if it was open.
    restorer?.add(panel, 'fiber-panel');
  }
};

export default plugin;
