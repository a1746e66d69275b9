// Review queue keyboard labelling: j/k or arrows move, 1-6 label with the category in that position,
// s skips. Each label is POSTed; the row leaves the queue when the server accepts it.
(function () {
  const table = document.getElementById("queue");
  if (!table) return;
  const labels = JSON.parse(table.dataset.labels);
  const status = document.getElementById("queue-status");
  const rows = () => Array.from(table.querySelectorAll("tbody tr[data-id]"));
  let index = 0;
  const empty = () => (rows().length ? "" : ". Queue empty. 队列已清空。");
  function select(i) {
    const all = rows();
    if (!all.length) return;
    index = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((r, k) => r.classList.toggle("selected", k === index));
    all[index].scrollIntoView({block: "nearest"});
  }
  async function send(row, path, body) {
    const resp = await fetch(path, {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
                                    body: new URLSearchParams(body), credentials: "same-origin"});
    if (!resp.ok) { status.textContent = "Error: " + (await resp.text()); return false; }
    row.remove();
    return true;
  }
  async function label(name) {
    const row = rows()[index];
    if (!row) return;
    if (await send(row, "/console/review/" + row.dataset.id + "/label", {label: name})) {
      select(index);
      status.textContent = "Labelled #" + row.dataset.id + " as " + name + empty();
    }
  }
  async function skip() {
    const row = rows()[index];
    if (row && await send(row, "/console/review/" + row.dataset.id + "/skip", {})) {
      select(index);
      status.textContent = "Skipped #" + row.dataset.id + empty();
    }
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.matches("input, textarea, select")) return;
    if (e.key === "j" || e.key === "ArrowDown") { select(index + 1); e.preventDefault(); }
    else if (e.key === "k" || e.key === "ArrowUp") { select(index - 1); e.preventDefault(); }
    else if (e.key === "s") { skip(); }
    else if (/^[1-9]$/.test(e.key) && labels[Number(e.key) - 1]) { label(labels[Number(e.key) - 1]); }
  });
  table.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-label]");
    const row = e.target.closest("tr[data-id]");
    if (row) select(rows().indexOf(row));
    if (button) label(button.dataset.label);
  });
  select(0);
})();
