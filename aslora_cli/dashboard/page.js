// The dashboard page: polls the runs and the selected run's detail, and redraws tables and charts in
// place (Plotly.react), without reloading. Text from the coordinator is set as text, never as markup.
"use strict";

const token = new URLSearchParams(window.location.search).get("token") || "";
const refreshMs = Number(document.body.dataset.refreshMs);
const charts = ["accuracy", "loss", "epsilon", "selection", "margins"];
const plotConfig = { displaylogo: false, responsive: true };
let selectedRun = new URLSearchParams(window.location.search).get("run") || "";

function apiUrl(path, parameters) {
  const query = new URLSearchParams({ token: token, ...parameters });
  return `${path}?${query}`;
}

async function fetchJson(path, parameters) {
  const response = await fetch(apiUrl(path, parameters), { cache: "no-store" });
  const document = await response.json();
  if (!response.ok) {
    throw new Error(document.error || `HTTP ${response.status}`);
  }
  return document;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) {
    td.className = className;
  }
  return td;
}

function number(value, digits) {
  return value === null || value === undefined ? "" : Number(value).toFixed(digits);
}

function showRuns(runs) {
  const body = document.querySelector("#runs tbody");
  body.replaceChildren();
  for (const run of runs) {
    const row = body.insertRow();
    row.dataset.runId = run.run_id;
    row.classList.toggle("selected", run.run_id === selectedRun);
    cell(row, run.run_id);
    cell(row, run.state, `run-state state-${run.state}`);
    cell(row, run.policy);
    cell(row, run.task);
    cell(row, `${run.rounds_completed} / ${run.rounds_total}`);
    cell(row, number(run.epsilon_spent, 3));
    cell(row, run.reason);
    row.addEventListener("click", () => {
      selectedRun = run.run_id;
      refresh();
    });
  }
}

function showSilos(silos) {
  const body = document.querySelector("#silos tbody");
  body.replaceChildren();
  for (const silo of silos) {
    const row = body.insertRow();
    row.dataset.siloId = silo.silo_id;
    cell(row, silo.silo_id);
    cell(row, silo.state, `silo-state state-${silo.state}`);
    cell(row, String(silo.dataset_size));
    cell(row, String(silo.rounds_participated));
    cell(row, number(silo.epsilon_reported, 3));
    cell(row, number(silo.epsilon_recomputed, 3));
    cell(row, silo.declined_reason || "");
  }
}

function showStatus(status) {
  document.getElementById("run").hidden = false;
  document.getElementById("run-id").textContent = status.run_id;
  const open = status.open_round === null ? "" : `, round ${status.open_round + 1} open`;
  const reason = status.reason ? ` (${status.reason})` : "";
  document.getElementById("run-summary").textContent =
    `${status.state}${reason}: ${status.policy}, ${status.task}, ` +
    `${status.rounds_completed} of ${status.rounds_total} rounds${open}`;
  document.getElementById("run-waiting").textContent = status.waiting_for;
  showSilos(status.silos);
}

function showFigures(figures) {
  for (const name of charts) {
    const place = document.getElementById(`${name}-chart`);
    const figure = figures[name];
    place.hidden = figure === undefined;
    if (figure !== undefined) {
      Plotly.react(place, figure.data, figure.layout, plotConfig);
    }
  }
}

function showError(message) {
  const banner = document.getElementById("error");
  banner.hidden = message === "";
  banner.textContent = message;
}

async function refresh() {
  try {
    const { runs } = await fetchJson("api/runs", {});
    if (!runs.some((run) => run.run_id === selectedRun)) {
      const active = runs.find((run) => !run.ended && run.state !== "queued");
      selectedRun = (active || runs[runs.length - 1] || { run_id: "" }).run_id;
    }
    showRuns(runs);
    if (selectedRun) {
      const detail = await fetchJson("api/run", { run: selectedRun });
      showStatus(detail.status);
      showFigures(detail.figures);
    }
    showError("");
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    showError(`the coordinator did not answer: ${error.message}`);
  }
}

async function poll() {
  await refresh();
  window.setTimeout(poll, refreshMs);
}

poll();
