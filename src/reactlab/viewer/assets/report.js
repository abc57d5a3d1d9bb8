// The trajectory viewer of a reactlab report: reads the inlined JSON (#data), filters the episodes,
// lists one page of them at a time, and shows an opened question's episodes in every run side by side.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const PAGE = 100;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const byQuestion = new Map();
  D.episodes.forEach((e, i) => {
    e.qt = (D.questions[e.id] || {}).q || "";
    e.ql = e.qt.toLowerCase();
    e.i = i;
    if (!byQuestion.has(e.id)) byQuestion.set(e.id, []);
    byQuestion.get(e.id).push(e);
  });
  let shown = D.episodes, page = 0, openId = null;

  function options(sel, values) {
    for (const [v, label] of values) {
      const o = document.createElement("option");
      o.value = v; o.textContent = label; sel.appendChild(o);
    }
  }
  options($("f-run"), D.runs.map((r, i) => [String(i), r.label]));
  options($("f-status"), [...new Set(D.episodes.map((e) => e.s))].sort().map((s) => [s, s]));
  options($("f-type"), [...new Set(D.episodes.map((e) => (D.questions[e.id] || {}).ty || "?"))].sort().map((s) => [s, s]));

  const correct = (e) => e.m !== null && e.m >= D.correctAt;

  function applyFilters() {
    const run = $("f-run").value, cor = $("f-correct").value, st = $("f-status").value;
    const ty = $("f-type").value, text = $("f-text").value.trim().toLowerCase();
    shown = D.episodes.filter((e) =>
      (run === "" || e.r === +run) &&
      (cor === "" || correct(e) === (cor === "1")) &&
      (st === "" || e.s === st) &&
      (ty === "" || ((D.questions[e.id] || {}).ty || "?") === ty) &&
      (text === "" || e.ql.includes(text)));
    page = 0;
    renderList();
  }

  function renderList() {
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    const rows = shown.slice(page * PAGE, (page + 1) * PAGE).map((e) => {
      const q = D.questions[e.id] || {};
      const score = e.m === null ? "–" : e.m.toFixed(2);
      return `<tr data-i="${e.i}" class="${correct(e) ? "ok" : "bad"}${e.id === openId ? " open" : ""}">` +
        `<td>${esc(D.runs[e.r].label)}</td><td class="q">${esc(e.qt)}</td><td>${esc(q.ty || "")}</td>` +
        `<td>${esc(e.s)}</td><td class="num">${score}</td><td class="num">${e.st.length}</td><td class="num">${e.t}</td></tr>`;
    });
    document.querySelector("#list tbody").innerHTML = rows.join("");
    $("count").textContent = `${shown.length} of ${D.episodes.length} episodes`;
    $("page").textContent = `page ${page + 1} of ${pages}`;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }

  function reEscape(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  // Marks in `text`: the gold answers (class gold) and the supporting facts' titles and sentences
  // (class sf); the rest is escaped.
  function marker(q) {
    const terms = [];
    for (const g of [q.g, ...(q.al || [])]) if (g && g.trim().length >= 2) terms.push([g.trim(), "gold"]);
    for (const [title, , sent] of q.sf || []) {
      if (sent && sent.trim().length >= 8) terms.push([sent.trim(), "sf"]);
      if (title) terms.push([title, "sf"]);
    }
    if (!terms.length) return (raw) => esc(raw ?? "");
    const kind = new Map();  // a text that is both a gold answer and a fact is marked gold
    for (const [t, k] of terms) if (!kind.has(t.toLowerCase())) kind.set(t.toLowerCase(), k);
    terms.sort((a, b) => b[0].length - a[0].length);
    const re = new RegExp(terms.map(([t]) => reEscape(t)).join("|"), "gi");
    return (raw) => {
      const text = String(raw ?? "");
      let out = "", last = 0;
      for (const m of text.matchAll(re)) {
        out += esc(text.slice(last, m.index)) + `<mark class="${kind.get(m[0].toLowerCase()) || "gold"}">${esc(m[0])}</mark>`;
        last = m.index + m[0].length;
      }
      return out + esc(text.slice(last));
    };
  }

  function episodeHtml(e, mark, depth) {
    const steps = e.st.map(([i, thought, action, name, obs]) =>
      `<li class="step"><div class="th"><b>Thought ${i}:</b> ${mark(thought)}</div>` +
      `<div class="ac ${name === "invalid" ? "invalid" : ""}"><b>Action ${i}:</b> ${mark(action)}</div>` +
      `<div class="ob"><b>Observation ${i}:</b> ${mark(obs)}</div></li>`).join("");
    const scores = Object.entries(e.sc || {}).map(([k, v]) => `${esc(k)} ${(+v).toFixed(2)}`).join(" · ");
    const kids = (e.ch || []).map((c, k) =>
      `<details class="child"><summary>sub-episode ${k + 1}: ${esc(c.ag || "")} → ${esc(c.a)} (${esc(c.s)})</summary>` +
      episodeHtml(c, mark, depth + 1) + "</details>").join("");
    return `<div class="facts"><span class="st-${esc(e.s)}">${esc(e.s)}</span> · answer <b>${mark(e.a)}</b>` +
      (scores ? ` · ${scores}` : "") + ` · ${e.st.length} steps · ${e.t} tokens · ${e.w}s</div>` +
      (e.e ? `<div class="error">${esc(e.e)}</div>` : "") + `<ol class="steps">${steps}</ol>${kids}`;
  }

  function openEpisode(e) {
    openId = e.id;
    const q = D.questions[e.id] || {};
    const mark = marker(q);
    const runs = byQuestion.get(e.id).slice().sort((a, b) => a.r - b.r);
    const sf = (q.sf || []).map(([t, i, s]) => `<li><mark class="sf">${esc(t)}</mark>` +
      (i !== null && i !== undefined ? ` [${i}]` : "") + (s ? `: ${esc(s)}` : "") + "</li>").join("");
    const cols = runs.map((x) => `<div class="col${x.i === e.i ? " picked" : ""}" data-run="${x.r}">` +
      `<h4>${esc(D.runs[x.r].label)} <span class="${correct(x) ? "ok" : "bad"}">${correct(x) ? "correct" : "wrong"}</span></h4>` +
      episodeHtml(x, mark, 0) + "</div>").join("");
    $("episode").innerHTML =
      `<h3 class="question">${esc(q.q || "")}</h3><p class="gold">gold: <mark class="gold">${esc(q.g || "")}</mark>` +
      ((q.al || []).length ? ` (also: ${q.al.map(esc).join(", ")})` : "") + ` · id <code>${esc(e.id)}</code>` +
      (q.ty ? ` · ${esc(q.ty)}` : "") + "</p>" +
      (sf ? `<details class="sfl" open><summary>supporting facts</summary><ul>${sf}</ul></details>` : "") +
      `<div class="cols">${cols}</div>`;
    history.replaceState(null, "", "#q=" + encodeURIComponent(e.id));
    renderList();
  }

  ["f-run", "f-correct", "f-status", "f-type"].forEach((id) => $(id).addEventListener("change", applyFilters));
  let timer = null;
  $("f-text").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(applyFilters, 150); });
  $("prev").addEventListener("click", () => { page -= 1; renderList(); });
  $("next").addEventListener("click", () => { page += 1; renderList(); });
  document.querySelector("#list tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-i]");
    if (tr) openEpisode(D.episodes[+tr.dataset.i]);
  });
  renderList();
  const m = location.hash.match(/^#q=(.+)$/);
  if (m && byQuestion.has(decodeURIComponent(m[1]))) openEpisode(byQuestion.get(decodeURIComponent(m[1]))[0]);
  document.body.dataset.ready = "1";
})();
