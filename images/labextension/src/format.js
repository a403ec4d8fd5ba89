// ec2hub costs: the hub's answer (GET <base_url>ec2hub/costs) as the status bar's text, tooltip and
// notices. Pure, so that it can be checked with node alone (tests/unit/test_lab_costs.py).

function dollars(value) {
  return Number.isInteger(value) ? `$${value}` : `$${value.toFixed(2)}`;
}

// Cheap sizes cost fractions of a cent more than the cents show.
function hourlyRate(value) {
  return `$${value < 1 ? value.toFixed(3) : value.toFixed(2)}`;
}

// The limit the month is measured against: the hard one stops things, the soft one only warns.
function limitOf(budget) {
  return budget ? (budget.hard ?? budget.soft ?? null) : null;
}

export function describe(costs) {
  const parts = [];
  const lines = [];
  const server = costs.server;
  if (server) {
    parts.push(`${hourlyRate(server.hourly)}/h`);
    const market = server.spot ? 'spot' : 'on-demand';
    lines.push(`This server: ${server.size}, ${hourlyRate(server.hourly)} an hour (${market})`);
  }
  const limit = limitOf(costs.budget);
  const month = `${dollars(costs.month_to_date)} this month`;
  parts.push(limit === null ? month : `${month} of ${dollars(limit)}`);
  lines.push(`Spent this month: ${dollars(costs.month_to_date)}`);
  if (costs.budget) {
    const { soft, hard } = costs.budget;
    const limits = [];
    if (soft !== null && soft !== undefined) {
      limits.push(`${dollars(soft)} (warning)`);
    }
    if (hard !== null && hard !== undefined) {
      limits.push(`${dollars(hard)} (limit)`);
    }
    lines.push(`Monthly budget: ${limits.join(', ')}`);
  }
  if (costs.prices_as_of) {
    lines.push(`Prices as of ${costs.prices_as_of}`);
  }
  // Each kind of notice is shown once per page load, whatever its text says of the spend since.
  const notices = ['warning', 'refusal'].filter(kind => costs[kind]).map(kind => ({ kind, text: costs[kind] }));
  lines.push(...notices.map(notice => notice.text));
  if (costs.contact) {
    lines.push(`Questions about costs: ${costs.contact}`);
  }
  return { text: parts.join(' · '), title: lines.join('\n'), notices };
}
