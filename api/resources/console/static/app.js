/* credit-ledger console: reads the API with the user's token; writes nothing.
 *
 * Every value from the API is inserted as text (createTextNode, textContent), never as
 * HTML. Addresses are relative to where this file is served, so the console works behind
 * a proxy that mounts the service under a prefix. */
(function () {
  "use strict";

  const KEY = "credit-ledger.token";
  const STATIC = new URL(".", document.currentScript.src);
  const CONSOLE = new URL("..", STATIC);
  const ROOT = new URL("..", CONSOLE);
  const PAGE_SIZE = 20;
  const COLUMNS = [
    ["created", "Created"], ["top_ups", "Top-ups"], ["reductions", "Reductions"],
    ["withdrawable_adjustments", "Withdrawable adj."], ["consumed", "Consumed"],
    ["draws_reversed", "Draws reversed"], ["floor_draws", "Floor draws"],
    ["expired", "Expired"], ["written_off", "Written off"], ["reversed", "Reversed"],
    ["adjustments", "Adjustments"],
  ];
  const PALETTE = ["#1f5fbf", "#d9822b", "#2e8b57", "#8e44ad", "#c0392b", "#16a085",
                   "#7f8c8d", "#b7950b"];
  const main = document.getElementById("main");

  class Unauthorized extends Error {}

  // --- elements, always as text ---------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("data-") || name.startsWith("aria-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function link(path, text) {
    return el("a", {href: new URL(path, CONSOLE).href}, text);
  }

  function show(...nodes) {
    main.replaceChildren(...nodes);
  }

  function fill(node, ...children) {  // replaceChildren, skipping what is absent
    node.replaceChildren(...children.filter((child) => child !== null && child !== undefined));
  }

  function table(headers, rows, attrs) {
    const head = el("tr", {}, headers.map(([label, numeric]) =>
      el("th", {class: numeric ? "num" : "", scope: "col"}, label)));
    return el("div", {class: "scroll"},
      el("table", attrs || {}, el("thead", {}, head), el("tbody", {}, rows)));
  }

  function cell(value, numeric, raw) {
    return el("td", {class: numeric ? "num" : "name", "data-value": raw}, value);
  }

  function moneyCell(value) {
    return cell(value === null || value === undefined ? "—" : money(value), true,
                value === null || value === undefined ? "" : value);
  }

  // --- money: decimal strings, exact ----------------------------------------------------

  function units(text) {  // "12.34500" -> 1234500n (5 places)
    const negative = text.startsWith("-");
    const [whole, fraction = ""] = text.replace("-", "").split(".");
    const value = BigInt(whole + (fraction + "00000").slice(0, 5));
    return negative ? -value : value;
  }

  function fromUnits(value) {
    const negative = value < 0n;
    const digits = (negative ? -value : value).toString().padStart(6, "0");
    return (negative ? "-" : "") + digits.slice(0, -5) + "." + digits.slice(-5);
  }

  function money(text) {  // "-1234.50000" -> "-1,234.50"; never rounds
    const negative = text.startsWith("-");
    let [whole, fraction = ""] = text.replace("-", "").split(".");
    fraction = fraction.replace(/0+$/, "").padEnd(2, "0");
    whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (negative ? "−" : "") + whole + "." + fraction;
  }

  // --- the API ----------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(KEY);
  }

  async function request(path, params, accept) {
    const url = new URL("api/" + path, ROOT);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const response = await fetch(url, {headers: {
      "Authorization": "Token " + token(), "Accept": accept || "application/json"}});
    if (response.status === 401) throw new Unauthorized();
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = body.detail || Object.entries(body).map(([k, v]) => k + ": " + v).join("; ");
      } catch (ignored) { /* not JSON */ }
      const error = new Error(detail);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  async function api(path, params) {
    const response = await request(path, params);
    return {data: await response.json(), headers: response.headers};
  }

  async function download(path, params, fallback) {
    const response = await request(path, params, "*/*");
    const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const href = URL.createObjectURL(await response.blob());
    const anchor = el("a", {href: href, download: named ? named[1] : fallback});
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
  }

  function downloadButton(label, path, params, fallback) {
    const button = el("button", {type: "button", class: "secondary"}, label);
    button.addEventListener("click", () => download(path, params, fallback).catch(failed));
    return button;
  }

  // --- sign-in -----------------------------------------------------------------------------

  function signIn(message) {
    sessionStorage.removeItem(KEY);
    document.getElementById("sign-out").hidden = true;
    document.getElementById("nav").hidden = true;
    const input = el("input", {id: "token", type: "password", autocomplete: "off",
                               required: true, spellcheck: false});
    const form = el("form", {class: "card signin"},
      el("h1", {}, "Sign in"),
      message ? el("p", {class: "error", role: "alert"}, message) : null,
      el("label", {htmlFor: "token"}, "Token"), input,
      el("p", {class: "muted"}, "The token `credit-ledger users create` printed. It is kept " +
         "in this browser tab only and sent to this service alone."),
      el("button", {type: "submit"}, "Sign in"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim().replace(/^Token\s+/i, ""));
      route();
    });
    show(form);
    input.focus();
  }

  function failed(error) {
    if (error instanceof Unauthorized) signIn("Invalid token.");
    else show(el("p", {class: "error", role: "alert"}, error.message || String(error)));
  }

  // --- paged lists ---------------------------------------------------------------------------

  function pager(page, count, go) {
    const pages = Math.max(1, Math.ceil(count / PAGE_SIZE));
    const previous = el("button", {type: "button", class: "secondary", disabled: page <= 1},
                        "Previous");
    const next = el("button", {type: "button", class: "secondary", disabled: page >= pages},
                    "Next");
    previous.addEventListener("click", () => go(page - 1));
    next.addEventListener("click", () => go(page + 1));
    return el("div", {class: "pager"}, previous,
              el("span", {class: "muted"}, `Page ${page} of ${pages} (${count})`), next);
  }

  function pagedSection(title, id, filters, load) {
    const body = el("div", {});
    const section = el("section", {id: id}, el("h2", {}, title), filters, body);
    async function go(page) {
      try {
        const {rows, count, headers} = await load(page);
        body.replaceChildren(rows.length ? table(headers, rows) : el("p", {class: "muted"},
                             "Nothing here."), pager(page, count, go));
      } catch (error) {
        if (error instanceof Unauthorized) return failed(error);
        body.replaceChildren(el("p", {class: "error"}, error.message));
      }
    }
    return {section, go};
  }

  function count(headers) {
    return Number(headers.get("X-Result-Count") || 0);
  }

  // --- organisations -------------------------------------------------------------------------

  async function organisations() {
    const params = new URLSearchParams(location.search);
    const query = params.get("query") || "";
    const input = el("input", {id: "search", type: "search", name: "query", value: query});
    const form = el("form", {class: "inline", role: "search"},
      el("label", {htmlFor: "search"}, "Search", input),
      el("button", {type: "submit"}, "Search"));
    const list = pagedSection("Organisation credits", "organisations", form, async (page) => {
      const {data, headers} = await api("customer-credits/", {
        page: page, page_size: PAGE_SIZE, query: input.value});
      return {count: count(headers), headers: [
        ["Organisation"], ["Balance", true], ["Allocated", true], ["Unallocated", true],
        ["Runway", true]],
        rows: data.map((credit) => el("tr", {"data-customer": credit.customer_uuid},
          el("td", {class: "name"}, link(`customers/${credit.customer_uuid}/`,
                                         credit.customer_name)),
          moneyCell(credit.value), moneyCell(credit.allocated_to_projects),
          moneyCell(fromUnits(units(credit.value) - units(credit.allocated_to_projects))),
          cell(runway(credit), true)))};
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      history.replaceState(null, "", input.value ? "?query=" + encodeURIComponent(input.value)
                                                 : location.pathname);
      list.go(1);
    });
    show(el("h1", {}, "Organisations"), list.section);
    await list.go(1);
  }

  function runway(credit) {
    // The API's runway_months: the balance over the average monthly draw of the last
    // (up to three) closed months; null when there is none.
    const months = credit.runway_months;
    return months === null || months === undefined ? "—" : months.toFixed(1) + " months";
  }

  // --- one organisation ----------------------------------------------------------------------

  async function customer(uuid) {
    const {data: credits} = await api("customer-credits/", {customer_uuid: uuid});
    if (!credits.length) {
      show(el("h1", {}, "Organisation"),
           el("p", {class: "error", role: "alert"}, "No organisation credit you may see."));
      return;
    }
    const credit = credits[0];
    const heading = el("h1", {}, credit.customer_name);
    const summary = el("section", {},
      el("dl", {class: "figures"},
        figure("Balance", credit.value), figure("Allocated to projects",
                                                credit.allocated_to_projects),
        figure("Unallocated", fromUnits(units(credit.value) - units(credit.allocated_to_projects))),
        figure("Withdrawable", credit.withdrawable_balance),
        el("div", {}, el("dt", {}, "Runway"), el("dd", {}, runway(credit)))));
    show(heading, summary);
    let months;
    try {
      months = (await api(`customer-credits/${credit.uuid}/months/`, {months: 12})).data;
    } catch (error) {
      if (error instanceof Unauthorized || error.status !== 403) throw error;
      main.append(el("p", {class: "muted"},
                     "Months and statements are for the organisation's owners."));
      return;
    }
    main.append(chartSection(months), monthTable(months), statementSection(credit, months),
                projectList(months));
  }

  function figure(label, value) {
    return el("div", {}, el("dt", {}, label),
              el("dd", {"data-value": value}, value === null ? "—" : money(value)));
  }

  function chartSection(months) {
    const box = el("div", {class: "chart", id: "chart"});
    box.dataset.points = JSON.stringify(months.months.map((m) => ({
      month: m.month, balance: m.closing, closed: m.closed})));
    const section = el("section", {id: "chart-section"},
      el("h2", {}, "Balance at each month's end"), box,
      el("p", {class: "legend-note"}, "Each point is the balance at the first instant of the " +
         "next month (today's for the current month). Closed months are filled points (●), " +
         "open ones hollow."));
    requestAnimationFrame(() => drawChart(box, months));
    return section;
  }

  function drawChart(box, months) {
    const x = months.months.map((m) => Date.UTC(Number(m.month.slice(0, 4)),
                                                Number(m.month.slice(5, 7)) - 1, 15) / 1000);
    const closing = months.months.map((m) => Number(m.closing));
    const allocated = months.months.map((m, i) => Number(fromUnits(months.project_credits.reduce(
      (sum, p) => sum + (p.month_ends[i] === null ? 0n : units(p.month_ends[i])), 0n))));
    const last = months.months.length - 1;
    const top = months.project_credits.filter((p) => p.month_ends[last] !== null)
      .sort((a, b) => Number(units(b.month_ends[last]) - units(a.month_ends[last])))
      .slice(0, 5);
    const series = [{}, line("Organisation credit", PALETTE[0], 3),
                    line("Allocated to projects", PALETTE[1], 2)];
    const data = [x, closing, allocated];
    top.forEach((project, i) => {
      series.push(line(project.project_name || project.project_uuid, PALETTE[i + 2], 1));
      data.push(project.month_ends.map((end) => end === null ? null : Number(end)));
    });
    series.push({label: "Month closed", stroke: "#1c2430", fill: "#1c2430", width: 0,
                 paths: () => null, points: {show: true, size: 9, fill: "#1c2430"}});
    data.push(months.months.map((m, i) => m.closed ? closing[i] : null));
    const width = () => Math.max(280, box.clientWidth);
    const plot = new uPlot({
      width: width(), height: window.innerWidth < 600 ? 240 : 320, series: series,
      scales: {x: {time: true}},
      axes: [{values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toISOString()
                                                      .slice(0, 7))},
             {size: 70, values: (u, ticks) => ticks.map((t) => t.toLocaleString("en"))}],
    }, data, box);
    window.addEventListener("resize", () => plot.setSize({width: width(), height: plot.height}));
  }

  function line(label, stroke, width) {
    return {label: label, stroke: stroke, width: width, spanGaps: false,
            value: (u, v) => v === null ? "—" : v.toLocaleString("en")};
  }

  function monthTable(months) {
    const rows = months.months.slice().reverse().map((m) => el("tr", {
      class: m.closed ? "closed" : "", "data-month": m.month},
      el("td", {}, m.month), el("td", {}, m.closed ? "closed" : "open"),
      moneyCell(m.opening), COLUMNS.map(([name]) => moneyCell(m[name])), moneyCell(m.closing),
      el("td", {}, m.ties_out ? "yes" : "NO")));
    return el("section", {id: "months-section"},
      el("h2", {}, "Months of the organisation credit"),
      table([["Month"], ["State"], ["Opening", true], ...COLUMNS.map(([, label]) => [label, true]),
             ["Closing", true], ["Ties out"]], rows, {id: "months"}));
  }

  function statementSection(credit, months) {
    // Loaded when a month is chosen: a month of a large organisation has thousands of lines.
    const select = el("select", {id: "statement-month"},
      el("option", {value: ""}, "Choose a month"),
      months.months.slice().reverse().map((m) => el("option", {value: m.month},
                                                    m.month + (m.closed ? " (closed)" : ""))));
    const body = el("div", {});
    const csv = el("button", {type: "button", class: "secondary", disabled: true},
                   "Download CSV");
    csv.addEventListener("click", () => download(`customer-credits/${credit.uuid}/statement/`, {
      period: select.value, format: "csv"}, `statement-${select.value}.csv`).catch(failed));
    async function load() {
      csv.disabled = !select.value;
      if (!select.value) return body.replaceChildren();
      try {
        const {data} = await api(`customer-credits/${credit.uuid}/statement/`,
                                 {period: select.value});
        body.replaceChildren(
          el("p", {}, `Opening ${money(data.opening)} · closing ${money(data.closing)}`),
          data.lines.length ? table(
            [["Date"], ["Scope"], ["Type"], ["Project"], ["Amount", true], ["Balance after", true]],
            data.lines.map((l) => el("tr", {}, el("td", {}, l.date.slice(0, 16).replace("T", " ")),
              el("td", {}, l.credit), el("td", {}, l.type), cell(l.project_name || "", false),
              moneyCell(l.amount), moneyCell(l.balance_after)))) :
            el("p", {class: "muted"}, "No movement this month."));
      } catch (error) {
        if (error instanceof Unauthorized) failed(error);
        else body.replaceChildren(el("p", {class: "error"}, error.message));
      }
    }
    select.addEventListener("change", load);
    return el("section", {id: "statement"}, el("h2", {}, "Statement of a month"),
      el("div", {class: "controls"}, el("label", {htmlFor: "statement-month"}, "Month", select),
         csv), body);
  }

  function projectList(months) {
    const last = months.months.length - 1;
    const input = el("input", {id: "project-filter", type: "search"});
    const body = el("div", {});
    function render() {
      const wanted = input.value.toLowerCase();
      const found = months.project_credits.filter((p) =>
        p.project_name.toLowerCase().includes(wanted));
      fill(body, table([["Project"], ["Balance now", true]],
        found.slice(0, 100).map((p) => el("tr", {}, el("td", {class: "name"},
          link(`project-credits/${p.uuid}/`, p.project_name || p.project_uuid)),
          moneyCell(p.month_ends[last])))),
        found.length > 100 ? el("p", {class: "muted"}, `100 of ${found.length} shown.`) : null);
    }
    input.addEventListener("input", render);
    render();
    return el("section", {id: "projects"}, el("h2", {}, "Project credits"),
      el("div", {class: "controls"}, el("label", {htmlFor: "project-filter"}, "Filter", input)),
      body);
  }

  // --- one project credit --------------------------------------------------------------------

  async function projectCredit(uuid) {
    const {data: credit} = await api(`project-credits/${uuid}/`);
    const {data: entries} = await api(`project-credits/${uuid}/history/`);
    show(el("h1", {}, credit.project_name),
      el("p", {}, "Organisation: ", link(`customers/${credit.customer_uuid}/`,
                                         credit.customer_name)),
      el("section", {}, el("dl", {class: "figures"}, figure("Balance", credit.value),
        figure("Spendable", credit.spendable_value),
        el("div", {}, el("dt", {}, "Ends"), el("dd", {}, credit.end_date || "—")),
        el("div", {}, el("dt", {}, "Minimal consumption"),
           el("dd", {}, credit.minimal_consumption_logic)))));
    main.append(historySection(entries));
    const items = consumptionSection(credit);
    const moves = transactionSection(uuid);
    main.append(items.section, moves.section);
    await Promise.all([items.go(1), moves.go(1)]);
  }

  function historySection(entries) {
    const rows = entries.slice().reverse().map((entry) => el("tr", {},
      el("td", {}, entry.timestamp.slice(0, 19).replace("T", " ")),
      el("td", {}, entry.actor || "—"), el("td", {}, entry.type),
      el("td", {class: "name"}, Object.entries(entry.changes || {}).map(([k, v]) =>
        k + ": " + (typeof v === "object" ? JSON.stringify(v) : v)).join(", "))));
    return el("section", {id: "history"}, el("h2", {}, "History"),
      table([["When"], ["Who"], ["What"], ["Changes"]], rows));
  }

  function monthInput(id, label) {
    const input = el("input", {id: id, type: "month"});
    return {input, label: el("label", {htmlFor: id}, label, input)};
  }

  function filterForm(fields, apply) {
    const form = el("form", {class: "inline"}, fields, el("button", {type: "submit"}, "Filter"));
    form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
    return form;
  }

  function consumptionSection(credit) {
    const period = monthInput("items-period", "Billing period");
    const uncovered = el("select", {id: "items-uncovered"}, el("option", {value: ""}, "any"),
      el("option", {value: "true"}, "uncovered"), el("option", {value: "false"}, "covered"));
    let list;
    const form = filterForm([period.label, el("label", {htmlFor: "items-uncovered"}, "Covered",
                                              uncovered)], () => list.go(1));
    list = pagedSection("Consumption items", "consumption", form, async (page) => {
      const {data, headers} = await api("consumptions/", {project_uuid: credit.project_uuid,
        period: period.input.value, uncovered: uncovered.value, page: page,
        page_size: PAGE_SIZE});
      return {count: count(headers), headers: [["Item"], ["Period"], ["Posted", true],
        ["From project", true], ["From organisation", true], ["Uncovered", true], ["Reversed"]],
        rows: data.map((item) => el("tr", {}, el("td", {}, item.id), el("td", {}, item.period),
          moneyCell(item.amount), moneyCell(item.drawn_from_project_credit),
          moneyCell(item.drawn_from_customer_credit), moneyCell(item.uncovered),
          el("td", {}, item.reversed ? "yes" : "no")))};
    });
    return list;
  }

  function transactionSection(uuid) {
    const period = monthInput("moves-period", "Billing period");
    const kind = el("input", {id: "moves-type", type: "text", placeholder: "e.g. consumption"});
    let list;
    const form = filterForm([period.label, el("label", {htmlFor: "moves-type"}, "Type", kind)],
                            () => list.go(1));
    list = pagedSection("Transactions", "transactions", form, async (page) => {
      const {data, headers} = await api("credit-transactions/", {project_credit_uuid: uuid,
        billing_period: period.input.value ? period.input.value + "-01" : "",
        transaction_type: kind.value.trim(), page: page, page_size: PAGE_SIZE});
      return {count: count(headers), headers: [["When"], ["Type"], ["Amount", true],
        ["Balance after", true], ["Billing period"], ["Comment"]],
        rows: data.map((move) => el("tr", {},
          el("td", {}, move.created.slice(0, 16).replace("T", " ")),
          el("td", {}, move.transaction_type_display), moneyCell(move.amount),
          moneyCell(move.balance_after), el("td", {}, (move.billing_period || "—").slice(0, 7)),
          cell(move.comment, false)))};
    });
    return list;
  }

  // --- periods ---------------------------------------------------------------------------------

  async function periods() {
    const {data: known} = await api("billing-periods/");
    const today = new Date().toISOString().slice(0, 7);
    const months = [...new Set([today, ...known.map((p) => p.period)])].sort().reverse();
    const state = Object.fromEntries(known.map((p) => [p.period, p.state]));
    const wanted = new URLSearchParams(location.search).get("period") || months[0];
    const select = el("select", {id: "period"}, months.map((m) =>
      el("option", {value: m, selected: m === wanted}, m + (state[m] === "closed" ?
                                                            " (closed)" : ""))));
    const body = el("div", {});
    select.addEventListener("change", () => {
      history.replaceState(null, "", "?period=" + select.value);
      report(select.value, state[select.value] === "closed", body).catch(failed);
    });
    show(el("h1", {}, "Periods"),
      el("section", {id: "period-list"}, el("h2", {}, "Months closed or re-opened"),
        table([["Month"], ["State"], ["Since"]], known.slice().reverse().map((p) =>
          el("tr", {"data-period": p.period}, el("td", {}, p.period), el("td", {}, p.state),
             el("td", {}, p.modified.slice(0, 16).replace("T", " ")))))),
      el("div", {class: "controls"}, el("label", {htmlFor: "period"}, "Month", select)), body);
    await report(select.value, state[select.value] === "closed", body);
  }

  async function report(period, closed, body) {
    let data;
    try {
      data = (await api("reconciliation/", {period: period})).data;
    } catch (error) {
      if (error.status !== 403) throw error;
      body.replaceChildren(el("p", {class: "muted"}, "Reconciliation and exports are for " +
                              "staff and support."));
      return;
    }
    const {data: head} = await api("audit/head/");
    const kinds = Object.entries(data.totals).map(([kind, f]) => el("tr", {"data-kind": kind},
      el("td", {}, kind === "customer_credit" ? "Organisation credits" : "Project credits"),
      moneyCell(f.opening), COLUMNS.map(([name]) => moneyCell(f[name])), moneyCell(f.closing),
      el("td", {}, f.ties_out ? "yes" : "NO")));
    const s = data.summary;
    fill(body,
      el("section", {id: "reconciliation"}, el("h2", {}, `Reconciliation of ${period}`),
        el("p", {}, `${s.rows} credits; every row ties out: ${s.all_rows_tie_out ? "yes" : "NO"};` +
           ` closings match ${s.closing_compared_with.join(" and ")}: ` +
           `${s.closing_matches ? "yes" : "NO"}.`),
        table([["Totals"], ["Opening", true], ...COLUMNS.map(([, l]) => [l, true]),
               ["Closing", true], ["Ties out"]], kinds, {id: "totals"})),
      el("section", {id: "exports"}, el("h2", {}, "Exports"),
        el("div", {class: "controls"},
          downloadButton("Reconciliation CSV", "reconciliation/csv/", {period: period},
                         `reconciliation-${period}.csv`),
          downloadButton("Billing-period lines CSV", "reconciliation/csv/",
                         {period: period, lines: "billing_periods"}, `lines-${period}.csv`),
          downloadButton("Totals CSV", "reconciliation/csv/", {period: period, lines: "totals"},
                         `totals-${period}.csv`),
          downloadButton("Usage CSV", "reconciliation/usage/", {period: period, format: "csv",
                                                                lines: "projects"},
                         `usage-${period}.csv`),
          closed ? downloadButton("Journal (beancount)", "journal/", {through: period,
                                  format: "beancount"}, `journal-${period}.beancount`) : null,
          closed ? downloadButton("Journal CSV", "journal/", {through: period, format: "csv"},
                                  `journal-${period}.csv`) : null),
        closed ? null : el("p", {class: "muted"}, "The journal covers closed months."),
        el("p", {}, "Audit log head: ", el("code", {id: "audit-head"},
                                            `${head.count} records, ${head.hash}`),
           ". The log itself: credit-ledger export audit --out FILE.")));
  }

  // --- routing -----------------------------------------------------------------------------------

  function route() {
    const signedIn = Boolean(token());
    document.getElementById("sign-out").hidden = !signedIn;
    document.getElementById("nav").hidden = !signedIn;
    if (!signedIn) return signIn();
    const rest = location.pathname.slice(CONSOLE.pathname.length);
    let found;
    let page;
    if (rest === "") page = organisations();
    else if ((found = /^customers\/([0-9a-fA-F-]{32,36})\/$/.exec(rest))) page = customer(found[1]);
    else if ((found = /^project-credits\/([0-9a-fA-F-]{32,36})\/$/.exec(rest))) {
      page = projectCredit(found[1]);
    } else if (rest === "periods/") page = periods();
    else page = Promise.resolve(show(el("h1", {}, "Not found")));
    page.catch(failed);
  }

  document.getElementById("brand").href = CONSOLE.href;
  document.getElementById("nav-organisations").href = CONSOLE.href;
  document.getElementById("nav-periods").href = new URL("periods/", CONSOLE).href;
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    signIn();
  });
  route();
}());
