// ec2hub costs: a JupyterLab status bar item with what this session costs (the server's $/hour and
// the user's month-to-date spend), refreshed every minute from the ec2hub_costs server extension
// (images/bootstrap/ec2hub_costs.py), and a notification when the user nears or passes the budget.
import { Notification } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { describe } from './format.js';

const REFRESH_MS = 60 * 1000;
const WARNING_CLASS = 'ec2hub-costs-warning';
const UNAVAILABLE = 'The hub did not say what this server costs; it is asked again every minute.';

function activate(app, statusBar) {
  const settings = ServerConnection.makeSettings();
  const item = new Widget();
  item.id = 'ec2hub-costs-status';
  item.addClass('ec2hub-costs-status');
  const label = document.createElement('span');
  label.className = 'jp-StatusBar-TextItem';
  item.node.appendChild(label);
  // A server without the server extension (one the hub did not start) has nothing to show.
  let available = false;
  statusBar.registerStatusItem('@ec2hub/costs:status', {
    item,
    align: 'left',
    rank: 50,
    isActive: () => available
  });
  const notified = new Set();

  async function refresh() {
    let status = 0;
    let shown = null;
    try {
      const response = await ServerConnection.makeRequest(`${settings.baseUrl}ec2hub/costs`, {}, settings);
      status = response.status;
      if (response.ok) {
        shown = describe(await response.json());
      }
    } catch (error) {
      console.warn('ec2hub costs:', error);
    }
    available = status !== 404;
    item.setHidden(!available);
    label.textContent = shown ? shown.text : 'cost unavailable';
    item.node.title = shown ? shown.title : UNAVAILABLE;
    const notices = shown ? shown.notices : [];
    item.toggleClass(WARNING_CLASS, notices.length > 0);
    for (const { kind, text } of notices.filter(notice => !notified.has(notice.kind))) {
      notified.add(kind);
      Notification.warning(text, { autoClose: false });
    }
  }

  void refresh();
  setInterval(() => void refresh(), REFRESH_MS);
}

export default {
  id: '@ec2hub/costs:status',
  description: "What this session costs, in the status bar, with the hub's budget warnings.",
  autoStart: true,
  requires: [IStatusBar],
  activate
};
