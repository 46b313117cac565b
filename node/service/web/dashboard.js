// Federation dashboard: reads /api/status every 5 s and shows it.
// Plain ES2020, no dependencies, no external resources (docs/dashboard.md).
'use strict';
(() => {
  const REFRESH_MS = 5000;
  const TIMEOUT_MS = 4000;
  const FRESH_S = 60;   // replica copies younger than this are fresh
  const STALE_S = 900;  // older than this is stale (the node's origin_stale alert, by default)
  const ASTANA_MS = 5 * 3600 * 1000; // Kazakhstan: UTC+5

  // Code, grid row, grid column, column span: a schematic map (west to east, north to
  // south). The names, in the page's language, come with the strings (/i18n.json, built from
  // tools/data/kz-regions.tsv and po/LANG.po: docs/i18n.md).
  const JURIS = [
    ['KZ-27', 1, 1], ['KZ-39', 1, 3], ['KZ-59', 1, 4], ['KZ-55', 1, 5], ['KZ', 1, 7],
    ['KZ-23', 2, 1], ['KZ-15', 2, 2], ['KZ-11', 2, 4], ['KZ-71', 2, 5], ['KZ-10', 2, 6],
    ['KZ-63', 2, 7], ['KZ-47', 3, 1], ['KZ-43', 3, 2], ['KZ-62', 3, 3], ['KZ-35', 3, 4, 2],
    ['KZ-33', 3, 6], ['KZ-61', 4, 3], ['KZ-31', 4, 4], ['KZ-19', 4, 5], ['KZ-79', 5, 3],
    ['KZ-75', 5, 5],
  ];

  // -- language: the strings of /i18n.json (the node picks by Accept-Language, or ?lang=) --
  const LANGS = ['kk', 'ru', 'en'];
  let L = { lang: 'en', plural: 'n!=1', messages: {}, regions: {} };
  const PLURAL = {
    'n!=1': (n) => (n !== 1 ? 1 : 0),
    ru: (n) => (n % 10 === 1 && n % 100 !== 11 ? 0
      : n % 10 >= 2 && n % 10 <= 4 && (n % 100 < 10 || n % 100 >= 20) ? 1 : 2),
    one: () => 0,
  };
  const fill = (s, args) => s.replace(/\{(\w+)\}/g, (m, k) => (k in args ? String(args[k]) : m));
  // t('...'), tn('one', 'many', n), tc('context', '...'): xgettext's keywords (po/update).
  const t = (s, args = {}) => fill(typeof L.messages[s] === 'string' ? L.messages[s] : s, args);
  const tc = (ctx, s) => (typeof L.messages[`${ctx}\u0004${s}`] === 'string' ? L.messages[`${ctx}\u0004${s}`] : s);
  function tn(one, many, n, args = {}) {
    const forms = L.messages[one];
    const a = { n: int(n), ...args };
    if (Array.isArray(forms)) return fill(forms[Math.min(PLURAL[L.plural](n), forms.length - 1)] || many, a);
    return fill(n === 1 ? one : many, a);
  }
  const ALERTS = () => ({
    fork: t('Fork'), peer_refusing: t('Peer refusing records'), peer_silent: t('Peer silent'),
    origin_stale: t('Origin stale'), map_full: t('Storage nearly full'), clock_skew: t('Clock skew'),
    office_clock_skew: t('Office clock wrong'), clock_refused: t('Registration refused: clock'),
  });
  const ALERT_ORDER = ['fork', 'clock_refused', 'peer_refusing', 'map_full', 'peer_silent', 'origin_stale',
    'office_clock_skew', 'clock_skew'];

  const $ = (sel) => document.querySelector(sel);
  const tid = (id) => document.querySelector(`[data-testid="${id}"]`);
  const nameOf = (code) => L.regions[code] || code;
  // The tiles are small: "Region", "облысы", "область" are left to the tooltip.
  const shortName = (code) => nameOf(code).replace(/ (Region|облысы|область)$/, '')
    .replace(/^(West|North|East) /, (w) => `${w[0]}. `);

  function el(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    }
    e.append(...kids);
    return e;
  }

  // Writes only what changed, so that a refresh moves nothing on the page.
  function put(e, text, cls, value) {
    if (!e) return;
    text = String(text);
    if (e.textContent !== text) e.textContent = text;
    if (cls !== undefined && e.className !== cls) e.className = cls;
    if (value !== undefined && value !== null && e.dataset.value !== String(value)) e.dataset.value = String(value);
  }
  const putId = (id, text, cls, value) => put(tid(id), text, cls, value);

  // -- formats: Intl, in the page's language --
  let NF = new Intl.NumberFormat('en');
  const int = (n) => (n === null || n === undefined ? '—' : NF.format(Number(n)));
  function pct(share) {
    if (share === null || share === undefined) return '—';
    const p = share * 100;
    const digits = p === 0 || p === 100 || p >= 10 ? 0 : 1;
    const v = digits ? Math.round(p * 10) / 1000 : Math.round(p) / 100;
    if (!hasIntl()) return `${new Intl.NumberFormat('ru', { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v * 100)}%`;
    return new Intl.NumberFormat(L.lang, { style: 'percent', minimumFractionDigits: digits,
      maximumFractionDigits: digits }).format(v);
  }
  // A browser whose ICU lacks a language (Debian's Chromium has no kk data) gets the
  // catalogue's units and month names, and numbers written as Russian writes them (the
  // same separators as Kazakh: a space between thousands, a decimal comma).
  // (A locale without data names November "M11" or "11".)
  const intlOk = {};
  const hasIntl = () => {
    if (!(L.lang in intlOk)) {
      const m = new Intl.DateTimeFormat(L.lang, { month: 'long', timeZone: 'UTC' })
        .format(new Date(Date.UTC(2026, 10, 1)));
      intlOk[L.lang] = !/^M?\d+$/.test(m);
    }
    return intlOk[L.lang];
  };
  const UNITS = () => ({ millisecond: t('{n} ms'), second: t('{n} s'), minute: t('{n} min'),
    hour: t('{n} h'), day: t('{n} d') });
  const unit = (v, u, digits = 0) => (hasIntl()
    ? new Intl.NumberFormat(L.lang, { style: 'unit', unit: u, unitDisplay: 'short',
      minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v)
    : fill(UNITS()[u], { n: new Intl.NumberFormat('ru', { minimumFractionDigits: digits,
      maximumFractionDigits: digits }).format(v) }));
  const MONTHS = () => [tc('month', 'January'), tc('month', 'February'), tc('month', 'March'),
    tc('month', 'April'), tc('month', 'May'), tc('month', 'June'), tc('month', 'July'),
    tc('month', 'August'), tc('month', 'September'), tc('month', 'October'),
    tc('month', 'November'), tc('month', 'December')];
  const ownDate = (d) => t('{day} {month} {year}', { day: d.getUTCDate(),
    month: MONTHS()[d.getUTCMonth()], year: d.getUTCFullYear() });
  function age(ms, short = false) {
    if (ms === null || ms === undefined || ms < 0) return '—';
    const s = ms / 1000;
    if (s < 10) return unit(s, 'second', 1);
    if (s < 60) return unit(Math.round(s), 'second');
    if (s < 3600) return unit(Math.floor(s / 60), 'minute');
    const [h, m, d] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), Math.floor(s / 86400)];
    if (s < 86400) return `${unit(h, 'hour')} ${unit(m, 'minute')}`;
    return short ? unit(d, 'day') : `${unit(d, 'day')} ${unit(h % 24, 'hour')}`;
  }
  const ago = (ms, now) => (!ms ? t('never') : t('{age} ago', { age: age(Math.max(0, now - ms)) }));
  function skew(ms) {
    const a = Math.abs(ms);
    const sign = ms < 0 ? '−' : ms > 0 ? '+' : '';
    return a < 1000 ? `${sign}${unit(a, 'millisecond')}` : `${sign}${unit(a / 1000, 'second', 1)}`;
  }
  // Astana time is UTC+5 (Etc/GMT-5: the sign of Etc zones is inverted).
  function astana(ms) {
    if (hasIntl()) {
      return new Intl.DateTimeFormat(L.lang, { timeZone: 'Etc/GMT-5', dateStyle: 'medium',
        timeStyle: 'medium' }).format(new Date(ms));
    }
    const d = new Date(ms + 5 * 3600 * 1000);
    return `${ownDate(d)}, ${d.toISOString().slice(11, 19)}`;
  }
  const day = (iso) => (hasIntl()
    ? new Intl.DateTimeFormat(L.lang, { timeZone: 'UTC', dateStyle: 'long' })
      .format(new Date(`${iso}T00:00:00Z`))
    : ownDate(new Date(`${iso}T00:00:00Z`)));
  const source = (s) => tc('source', s);

  function overdueBand(r) {
    if (!r || !r.count) return 'none';
    const s = r.share_overdue;
    return s === 0 ? 'ok' : s < 0.05 ? 'low' : s < 0.15 ? 'mid' : 'high';
  }
  function freshBand(r) {
    if (!r || r.source === 'missing' || r.staleness_s === null) return 'bad';
    if (r.source === 'live') return 'live';
    return r.staleness_s < FRESH_S ? 'fresh' : r.staleness_s < STALE_S ? 'aging' : 'bad';
  }

  // -- the map --
  // Names for extraction only: the sources are shown through tc('source', ...).
  // eslint-disable-next-line no-unused-vars
  const SOURCE_NAMES = () => [tc('source', 'live'), tc('source', 'replica'), tc('source', 'missing')];

  function tile(code, row, col, span) {
    const id = (k) => `region-${code}-${k}`;
    const li = el('li', { class: 'tile absent', 'data-testid': `region-${code}`, title: nameOf(code) },
      el('h3', { class: 't-name' }, el('span', { class: 't-code' }, code), ' ', shortName(code)),
      el('p', { class: 't-absent' }, t('no data yet')),
      el('p', { class: 't-count' },
        el('span', { class: 'big', 'data-testid': id('count') }, '—'), el('span', { class: 'unit' }, tn('appeal', 'appeals', 0))),
      el('dl', { class: 't-nums' },
        el('dt', {}, t('open')), el('dd', { 'data-testid': id('open') }, '—'),
        el('dt', {}, t('overdue')), el('dd', { 'data-testid': id('overdue') }, '—'),
        el('dt', {}, t('share')), el('dd', { class: 'share', 'data-testid': id('overdue-share') }, '')),
      el('p', { class: 't-fresh' },
        el('span', { class: 'dot', 'aria-hidden': 'true' }),
        el('span', { class: 't-src', 'data-testid': id('source') }, ''), ' ',
        el('span', { 'data-testid': id('staleness'), title: t('age of this node\'s copy') }, '—'),
        ` · ${t('lag')} `, el('span', { 'data-testid': id('lag') }, '—')));
    if (row) li.style.gridArea = `${row} / ${col} / auto / span ${span || 1}`;
    li.dataset.code = code;
    $('#map').append(li);
    return li;
  }

  function renderMap(regions) {
    const byCode = new Map(regions.map((r) => [r.code, r]));
    for (const r of regions) if (!tid(`region-${r.code}`)) tile(r.code, 0, 0); // not in JURIS
    for (const li of $('#map').children) {
      const code = li.dataset.code;
      const r = byCode.get(code);
      const id = (k) => `region-${code}-${k}`;
      if (!r) {
        li.className = 'tile absent';
        put(li.querySelector('.t-absent'), t('not in the federation'));
        putId(id('source'), '');
        for (const k of ['count', 'open', 'overdue', 'staleness', 'lag']) putId(id(k), '—');
        putId(id('overdue-share'), '');
        continue;
      }
      li.className = `tile od-${overdueBand(r)} fr-${freshBand(r)}${code === 'KZ' ? ' central' : ''}`;
      putId(id('source'), source(r.source), `t-src src-${freshBand(r)}`, r.source);
      put(li.querySelector('.unit'), tn('appeal', 'appeals', r.count));
      putId(id('count'), int(r.count), r.count >= 10000 ? 'big long' : 'big', r.count);
      putId(id('open'), int(r.open), undefined, r.open);
      putId(id('overdue'), int(r.overdue), undefined, r.overdue);
      putId(id('overdue-share'), r.count ? pct(r.share_overdue) : '—', 'share', r.share_overdue);
      putId(id('staleness'), r.source === 'live' ? t('now') : r.staleness_s === null ? t('never heard')
        : age(r.staleness_s * 1000, true),
        undefined, r.staleness_s === null ? 'null' : r.staleness_s);
      putId(id('lag'), int(r.lag_records), undefined, r.lag_records);
      const fresh = li.querySelector('.t-fresh');
      const why = [t('source: {source}', { source: source(r.source) }),
        r.staleness_s === null ? t('copy never received') : t('copy {age} old', { age: age(r.staleness_s * 1000) }),
        tn('{n} record behind', '{n} records behind', r.lag_records)].join('; ');
      if (fresh.title !== why) fresh.title = why;
    }
  }

  // -- tables: rows keyed, cells rewritten only when they change --
  function rows(tbody, items, key, cells) {
    const keep = new Set();
    items.forEach((it, i) => {
      const k = key(it);
      keep.add(k);
      const cs = cells(it);
      let tr = [...tbody.children].find((x) => x.dataset.key === k);
      if (!tr) {
        tr = el('tr');
        tr.dataset.key = k;
        cs.forEach((c, j) => tr.append(j === 0 ? el('th', { scope: 'row' }) : el('td')));
      }
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      cs.forEach((c, j) => {
        const td = tr.children[j];
        if (c.id && td.dataset.testid !== c.id) td.dataset.testid = c.id;
        put(td, c.t, c.cls || (c.num ? 'num' : ''), c.v);
      });
    });
    for (const tr of [...tbody.children]) if (!keep.has(tr.dataset.key)) tr.remove();
  }

  function renderRegionTable(regions) {
    const sorted = [...regions].sort((a, b) => a.code.localeCompare(b.code, 'en', { numeric: true }));
    rows($('#regions tbody'), sorted, (r) => r.code, (r) => {
      const id = (k) => `table-${r.code}-${k}`;
      const n = (k, v, text) => ({ id: id(k), t: text ?? int(v), v, num: true });
      return [
        { t: `${r.code} · ${nameOf(r.code)}` },
        { id: id('source'), t: source(r.source), v: r.source, cls: `src-${freshBand(r)}` },
        n('staleness', r.staleness_s, r.source === 'live' ? '—' : r.staleness_s === null ? t('never') : age(r.staleness_s * 1000)),
        n('lag', r.lag_records), n('count', r.count), n('open', r.open), n('overdue', r.overdue),
        { id: id('overdue-share'), t: r.count ? pct(r.share_overdue) : '—', v: r.share_overdue, cls: `num od-text-${overdueBand(r)}` },
        n('answered', r.answered),
        n('answered-in-term', r.answered_in_term, r.answered ? `${int(r.answered_in_term)} (${pct(r.share_answered_in_term)})` : '—'),
        n('median-days', r.median_days_to_answer, r.median_days_to_answer === null ? '—' : String(r.median_days_to_answer)),
        n('rated', r.rated),
        { id: id('satisfied-share'), t: r.rated ? pct(r.share_satisfied) : '—', v: r.share_satisfied, num: true },
      ];
    });
  }

  function renderCluster(c) {
    $('#standalone').hidden = !!c;
    $('#repl').hidden = !c;
    if (!c) return;
    const now = c.now_ms;
    const forks = c.forks || [];
    putId('forks-count', forks.length, forks.length ? 'count bad' : 'count');
    $('#no-forks').hidden = forks.length > 0;
    $('#forks').hidden = forks.length === 0;
    rows($('#forks tbody'), forks, (f) => `${f.jurisdiction}/${f.seq}/${f.via}`, (f) => [
      { t: `${f.jurisdiction} · ${nameOf(f.jurisdiction)}` },
      { id: `fork-${f.jurisdiction}-seq`, t: int(f.seq), v: f.seq },
      { t: f.via || '—' }, { t: ago(f.seen_ms, now) },
    ]);
    const banner = $('#banner-fork');
    banner.hidden = forks.length === 0;
    if (forks.length) {
      put(banner, t('Fork: {forks}. Its log is frozen on this node until the fork is resolved (docs/operations.md).', {
        forks: forks.map((f) => t('{code} signed two records for seq {seq}', { code: f.jurisdiction, seq: int(f.seq) })).join('; '),
      }));
    }
    rows($('#peers tbody'), c.peers || [], (p) => p.jurisdiction, (p) => {
      const id = (k) => `peer-${p.jurisdiction}-${k}`;
      return [
        { t: `${p.jurisdiction} · ${nameOf(p.jurisdiction)}` },
        { id: id('reachable'), t: p.reachable ? t('yes') : t('no'), v: p.reachable, cls: p.reachable ? 'good' : 'bad' },
        { id: id('last-contact'), t: ago(p.last_contact_ms, now), v: p.last_contact_ms },
        { id: id('last-ok'), t: ago(p.last_ok_ms, now), v: p.last_ok_ms },
        { id: id('errors'), t: int(p.errors), v: p.errors, cls: p.errors ? 'num warn' : 'num' },
        { id: id('refused'), t: int(p.refused_records), v: p.refused_records, cls: p.refused_records ? 'num bad' : 'num' },
        { id: id('records-in'), t: int(p.records_in), v: p.records_in, num: true },
        { id: id('clock-skew'), t: skew(p.clock_skew_ms), v: p.clock_skew_ms,
          cls: Math.abs(p.clock_skew_ms) > 30000 ? 'num bad' : 'num' },
        { id: id('last-error'), t: p.last_error || '—', cls: p.last_error ? 'err' : 'muted' },
      ];
    });
    const clockBanner = $('#banner-clock');
    clockBanner.hidden = !c.clock_refused_ms;
    if (c.clock_refused_ms) {
      put(clockBanner, t('This node\'s clock is {skew} off {code}\'s: registration refused until the clock is corrected.', {
        skew: skew(c.clock_refused_ms), code: c.clock_ref,
      }));
    }
    $('#no-dialers').hidden = (c.dialers || []).length > 0;
    rows($('#dialers tbody'), c.dialers || [], (d) => d.jurisdiction, (d) => {
      const id = (k) => `dialer-${d.jurisdiction}-${k}`;
      return [
        { t: `${d.jurisdiction} · ${nameOf(d.jurisdiction)}` },
        { id: id('last-contact'), t: ago(d.last_contact_ms, now), v: d.last_contact_ms },
        { id: id('clock-skew'), t: skew(d.clock_skew_ms), v: d.clock_skew_ms,
          cls: d.clock_refused ? 'num bad' : 'num' },
        { id: id('clock-refused'), t: d.clock_refused ? t('refuses to register') : t('no'), v: d.clock_refused,
          cls: d.clock_refused ? 'bad' : 'muted' },
      ];
    });
    rows($('#origins tbody'), c.origins || [], (o) => o.jurisdiction, (o) => {
      const id = (k) => `origin-${o.jurisdiction}-${k}`;
      const sb = o.staleness_ms < FRESH_S * 1000 ? '' : o.staleness_ms < STALE_S * 1000 ? ' warn' : ' bad';
      return [
        { t: `${o.jurisdiction} · ${nameOf(o.jurisdiction)}` },
        { id: id('held'), t: int(o.local_seq), v: o.local_seq, num: true },
        { id: id('best-known'), t: int(o.best_known_seq), v: o.best_known_seq, num: true },
        { id: id('lag'), t: int(o.lag_records), v: o.lag_records, cls: o.lag_records ? 'num warn' : 'num' },
        { id: id('staleness'), t: age(o.staleness_ms), v: o.staleness_ms, cls: `num${sb}` },
        { id: id('frozen'), t: o.frozen ? t('FROZEN: {reason}', { reason: o.frozen_reason || t('fork') }) : t('no'), v: o.frozen,
          cls: o.frozen ? 'bad' : 'muted' },
      ];
    });
  }

  function renderGlance(c, regions) {
    const peers = (c && c.peers) || [];
    const up = peers.filter((p) => p.reachable).length;
    putId('sum-peers-reachable', c ? t('{n} of {total}', { n: int(up), total: int(peers.length) }) : t('standalone'), up < peers.length ? 'bad' : '', up);
    const forks = c ? (c.forks || []).length : 0;
    putId('sum-forks', int(forks), forks ? 'bad' : 'good', forks);
    const lag = Math.max(0, ...regions.map((r) => r.lag_records || 0));
    putId('sum-max-lag', tn('{n} record', '{n} records', lag), lag ? 'warn' : '', lag);
    const missing = regions.filter((r) => r.source === 'missing');
    const copies = regions.filter((r) => r.source === 'replica' && r.staleness_s !== null)
      .sort((a, b) => b.staleness_s - a.staleness_s);
    const oldest = missing[0] || copies[0];
    putId('sum-oldest', !oldest ? t('all live') : oldest.source === 'missing'
      ? t('missing ({code})', { code: oldest.code })
      : `${age(oldest.staleness_s * 1000)} (${oldest.code})`, oldest ? `fb-${freshBand(oldest)}` : '');
  }

  function renderAlerts(list, now) {
    const sorted = [...list].sort((a, b) =>
      (ALERT_ORDER.indexOf(a.alert) - ALERT_ORDER.indexOf(b.alert)) || a.subject.localeCompare(b.subject));
    putId('alerts-count', sorted.length ? int(sorted.length) : t('none'), sorted.length ? 'bad' : 'good', sorted.length);
    $('#alerts-panel').hidden = sorted.length === 0;
    const ul = $('#alerts');
    const keep = new Set();
    sorted.forEach((a, i) => {
      const id = `alert-${a.alert}-${a.subject}`;
      keep.add(id);
      let li = tid(id);
      if (!li) {
        li = el('li', { 'data-testid': id },
          el('strong', {}, ''), ' ', el('span', { class: 'subj' }, ''),
          el('span', { class: 'detail' }, ''), el('span', { class: 'since' }, ''));
      }
      if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
      put(li.children[0], ALERTS()[a.alert] || a.alert);
      put(li.children[1], `${a.subject} · ${nameOf(a.subject)}`);
      put(li.children[2], a.detail);
      put(li.children[3], t('since {ago}', { ago: ago(a.since_ms, now) }));
      li.className = `alert sev-${a.alert === 'fork' || a.alert === 'peer_refusing' || a.alert === 'map_full' ? 'crit' : 'warn'}`;
    });
    for (const li of [...ul.children]) if (!keep.has(li.dataset.testid)) li.remove();
  }

  function renderTotals(regions) {
    const sum = (k) => regions.reduce((s, r) => s + (r[k] || 0), 0);
    const count = sum('count');
    const overdue = sum('overdue');
    putId('total-count', int(count), undefined, count);
    putId('total-open', int(sum('open')), undefined, sum('open'));
    putId('total-overdue', int(overdue), undefined, overdue);
    putId('total-overdue-share', count ? `(${pct(overdue / count)})` : '', `od-text-${overdueBand({ count, share_overdue: count ? overdue / count : 0 })}`);
    putId('total-answered', int(sum('answered')), undefined, sum('answered'));
    const heard = regions.filter((r) => r.source !== 'missing').length;
    putId('total-jurisdictions', t('{n} of {total}', { n: int(heard), total: int(regions.length) }), heard < regions.length ? 'bad' : '', regions.length);
  }

  function render(d) {
    putId('node-jurisdiction', `${d.jurisdiction} · ${nameOf(d.jurisdiction)}`, undefined, d.jurisdiction);
    putId('node-today', day(d.today), undefined, d.today);
    if (d.node) {
      putId('node-head-seq', int(d.node.head_seq), undefined, d.node.head_seq);
      putId('node-appeals', int(d.node.appeals), undefined, d.node.appeals);
      putId('node-software', d.node.software);
    }
    $('#banner-recovering').hidden = !(d.node && d.node.recovering);
    putId('generated-at', t('{time} Astana time', { time: astana(d.generated_ms) }), undefined, d.generated_ms);
    const regions = d.regions || [];
    renderMap(regions);
    renderTotals(regions);
    renderRegionTable(regions);
    renderCluster(d.cluster);
    renderGlance(d.cluster, regions);
    renderAlerts(d.alerts || [], d.generated_ms);
  }

  // -- refreshing, and saying how fresh the page is --
  let lastOk = 0;        // browser time of the last good refresh
  let failures = 0;
  let lastError = '';

  function showState() {
    const st = tid('refresh-status');
    const banner = $('#banner-stale');
    let state;
    let text;
    if (!lastOk && !failures) {
      state = 'loading'; text = t('Loading…');
    } else if (!failures) {
      state = 'ok'; text = t('Live: refreshed every 5 s');
    } else if (lastOk) {
      state = 'stale'; text = t('Data stale: refresh failing ({error})', { error: lastError });
    } else {
      state = 'error'; text = t('Cannot reach the node ({error})', { error: lastError });
    }
    if (st.dataset.state !== state || st.textContent !== text) {
      st.dataset.state = state;
      st.textContent = text;
    }
    document.body.classList.toggle('is-stale', state === 'stale');
    banner.hidden = state !== 'stale' && state !== 'error';
    if (!banner.hidden) {
      put(banner, state === 'stale'
        ? `${tn('Data stale: {n} refresh failed ({error}).', 'Data stale: {n} refreshes failed ({error}).', failures, { error: lastError })} ${
          t('Showing the last data received, {age} ago; retrying every 5 s.', { age: age(Date.now() - lastOk) })}`
        : t('No data: the node does not answer ({error}); retrying every 5 s.', { error: lastError }));
    }
    putId('data-age', lastOk ? t('(received {age} ago)', { age: age(Date.now() - lastOk) }) : '');
  }

  async function refresh() {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const res = await fetch('/api/status', { cache: 'no-store', signal: ctl.signal });
      if (!res.ok) throw new Error(t('HTTP {status}', { status: res.status }));
      const d = await res.json();
      render(d);
      lastOk = Date.now();
      failures = 0;
    } catch (e) {
      failures += 1;
      lastError = e.name === 'AbortError' ? t('no answer in {s}', { s: unit(TIMEOUT_MS / 1000, 'second') })
        : e instanceof TypeError ? t('node unreachable') : e.message;
    } finally {
      clearTimeout(timer);
      showState();
      setTimeout(refresh, REFRESH_MS);
    }
  }

  // The page's own texts (index.html: data-i18n, data-i18n-attr) in the language.
  function translatePage() {
    document.documentElement.lang = L.lang;
    for (const e of document.querySelectorAll('[data-i18n]')) {
      e.dataset.msgid = e.dataset.msgid || e.textContent.split(/\s+/).join(' ').trim();
      e.textContent = t(e.dataset.msgid);
    }
    for (const e of document.querySelectorAll('[data-i18n-attr]')) {
      for (const a of e.dataset.i18nAttr.split(',')) {
        const key = `msgid${a.replace(/(^|-)(\w)/g, (m, d, c) => c.toUpperCase())}`;
        e.dataset[key] = e.dataset[key] || e.getAttribute(a).split(/\s+/).join(' ').trim();
        e.setAttribute(a, t(e.dataset[key]));
      }
    }
    for (const a of document.querySelectorAll('#langs a')) {
      a.setAttribute('aria-current', a.dataset.lang === L.lang ? 'true' : 'false');
    }
  }

  // ?lang= (the switch on the page) wins, then the last choice, then Accept-Language.
  async function loadStrings() {
    const asked = new URLSearchParams(location.search).get('lang');
    let pick = LANGS.includes(asked) ? asked : null;
    try {
      if (pick) localStorage.setItem('lang', pick); else if (LANGS.includes(localStorage.getItem('lang'))) pick = localStorage.getItem('lang');
    } catch (e) { /* storage off: the URL or the browser decides */ }
    try {
      const res = await fetch(pick ? `/i18n.json?lang=${pick}` : '/i18n.json', { cache: 'no-store' });
      if (res.ok) L = await res.json();
    } catch (e) { /* no strings: English */ }
    NF = new Intl.NumberFormat(hasIntl() ? L.lang : 'ru');
  }

  loadStrings().then(() => {
    translatePage();
    document.documentElement.classList.add('i18n-ready');
    for (const j of JURIS) tile(...j);
    setInterval(showState, 1000);
    refresh();
  });
})();
