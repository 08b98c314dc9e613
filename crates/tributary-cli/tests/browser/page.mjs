// Drives the live page of `tributary serve` in headless Chromium at 1400 px: ask, ask again with a hanging source,
// compare with the sequential baseline (the answer and the table follow it), ask again with every source failing
// (the comparison is cleared), ask on a 360 px phone (nothing scrolls sideways, the table folds), open a source's
// circuit (a badge and a note), fetch the Chrome trace (STEPS=run, the default); or watch a chat model's words
// appear and give way to the answer (STEPS=writing, against a server with a slow chat endpoint). One line per
// step; exit 0 on success, 1 on the first failure (with a screenshot). Run by the Rust integration tests against
// a real server:
//
//   TRIBUTARY_URL=http://127.0.0.1:43210 CHROMIUM=/usr/bin/chromium SCREENSHOT_DIR=/tmp/shots node page.mjs

import path from 'node:path';
import { chromium } from 'playwright-core';

const QUESTION = 'What is the weather in Paris, and what is the news about structured concurrency?';
/** The whole script: it must never hang the test that runs it. */
const OVERALL_TIMEOUT_MS = 120_000;
/** One wait for the page (an answer, a comparison). */
const WAIT_TIMEOUT_MS = 20_000;
/** Closing the browser or saving the failure screenshot must not outlive the overall timeout by much. */
const CLEANUP_TIMEOUT_MS = 5_000;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const baseUrl = requiredEnv('TRIBUTARY_URL');
const chromiumPath = requiredEnv('CHROMIUM');
const screenshotDir = requiredEnv('SCREENSHOT_DIR');

let browser;
let page;
const pageErrors = [];
/** Set by the first failure: the watchdog closing the browser makes the running step fail too, once more. */
let failing = false;

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`FAIL: the environment variable ${name} is not set`);
    process.exit(1);
  }
  return value;
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Resolves to `fallback` after `ms`, so a wedged browser cannot stall the cleanup. */
function within(ms, promise, fallback = undefined) {
  return Promise.race([promise, new Promise((resolve) => setTimeout(resolve, ms, fallback))]);
}

async function fail(error) {
  if (failing) return;
  failing = true;
  console.error(`FAIL: ${error.message}`);
  const shot = path.join(screenshotDir, 'serve-page-failure.png');
  if (page) {
    const saved = await within(CLEANUP_TIMEOUT_MS, page.screenshot({ path: shot, fullPage: true }).then(() => true, () => false), false);
    if (saved) console.error(`saved ${shot}`);
  }
  await within(CLEANUP_TIMEOUT_MS, browser?.close().catch(() => {}));
  process.exit(1);
}

/** The text of one element, trimmed; null when it is absent. */
function textOf(selector) {
  return page.$eval(selector, (element) => element.textContent.trim()).catch(() => null);
}

async function screenshot(name) {
  await page.screenshot({ path: path.join(screenshotDir, name), fullPage: true });
}

const steps = [
  ['open the page and ask a question that uses all three sources', async () => {
    await page.goto(`${baseUrl}/`);
    // The fault selects are filled from GET /v1/sources: the page is ready once they are.
    await page.waitForSelector('#fault-news option[value="hang"]', { state: 'attached', timeout: WAIT_TIMEOUT_MS });
    await page.fill('#question', QUESTION);
    await page.click('#ask');
  }],
  ['the answer, the lanes, fetch and inference bars and the sources table are drawn', async () => {
    await page.waitForFunction(() => {
      const status = document.querySelector('#answer-status')?.textContent.trim();
      return ['ok', 'degraded'].includes(status)
        && document.querySelector('#gantt .bar[data-activity="fetch"]')
        && document.querySelector('#gantt .bar[data-activity="infer"]');
    }, null, { timeout: WAIT_TIMEOUT_MS });
    const lanes = await page.$$eval('#gantt .lane-label', (labels) => labels.map((label) => label.textContent));
    for (const lane of ['source weather', 'source news', 'source kb', 'worker 1']) {
      check(lanes.includes(lane), `lane "${lane}" is not drawn; the lanes are ${JSON.stringify(lanes)}`);
    }
    const news = await textOf('#sources tr[data-source="news"] .status');
    check(news === 'ok', `the news row reads "${news}", expected "ok"`);
    await screenshot('serve-page.png');
  }],
  ['with news hanging, Ask by keyboard gives a degraded answer and news timed out', async () => {
    await page.selectOption('#fault-news', 'hang');
    await page.focus('#ask');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() =>
      document.querySelector('#answer-status')?.textContent.trim() === 'degraded'
        && document.querySelector('#sources tr[data-source="news"] .status')?.textContent.trim() === 'timed out',
    null, { timeout: WAIT_TIMEOUT_MS }).catch(async (error) => {
      const answer = await textOf('#answer-status');
      const news = await textOf('#sources tr[data-source="news"] .status');
      throw new Error(`answer status "${answer}", news "${news}"; expected "degraded" and "timed out" (${error.message})`);
    });
    // The badge comes from the report's failure kind, not from the message.
    const failure = await page.$eval('#sources tr[data-source="news"] .failure', (badge) => badge.dataset.failure)
      .catch(() => null);
    check(['timed_out', 'deadline'].includes(failure),
      `the news row's failure badge is ${JSON.stringify(failure)}, expected "timed_out" or "deadline"`);
    await screenshot('serve-page-degraded.png');
  }],
  ['Compare shows the sequential and concurrent timelines and the speed-up', async () => {
    await page.selectOption('#fault-news', 'none');
    await page.click('#compare');
    await page.waitForFunction(() => /\d×/.test(document.querySelector('#speedup')?.textContent ?? ''),
      null, { timeout: WAIT_TIMEOUT_MS }).catch(async (error) => {
      throw new Error(`#speedup reads "${await textOf('#speedup')}" (${error.message}); #error reads "${await textOf('#error')}"`);
    });
    for (const mode of ['sequential', 'concurrent']) {
      const bars = await page.$$eval(`#gantt-${mode} .bar`, (found) => found.length);
      check(bars > 0, `the ${mode} chart has no bars`);
    }
    await screenshot('serve-page-compare.png');
  }],
  ["after Compare, the answer and the table are the comparison's concurrent run, its lines kept", async () => {
    // The degraded ask before had news timed out; the comparison ran without a fault.
    const news = await textOf('#sources tr[data-source="news"] .status');
    check(news === 'ok', `after Compare the news row reads "${news}", the earlier ask's, expected "ok"`);
    const status = await textOf('#answer-status');
    check(['ok', 'degraded'].includes(status), `after Compare the answer status reads "${status}"`);
    const layout = await page.$eval('#answer-text', (element) => ({
      whiteSpace: getComputedStyle(element).whiteSpace, lines: element.textContent.split('\n').length,
      height: element.getBoundingClientRect().height,
      lineHeight: parseFloat(getComputedStyle(element).lineHeight),
    }));
    check(layout.whiteSpace === 'pre-line', `the answer's white-space is ${layout.whiteSpace}`);
    check(layout.lines >= 2 && layout.height >= layout.lines * layout.lineHeight - 1,
      `the answer's ${layout.lines} lines are not shown as lines: ${JSON.stringify(layout)}`);
  }],
  ['an ask after a comparison clears it: a failed answer never sits above an old speed-up', async () => {
    for (const source of ['weather', 'news', 'kb']) await page.selectOption(`#fault-${source}`, 'error');
    await page.click('#ask');
    await page.waitForFunction(() => document.querySelector('#answer-status')?.textContent.trim() === 'failed',
      null, { timeout: WAIT_TIMEOUT_MS });
    const speedup = await textOf('#speedup');
    check(speedup === '', `the old comparison is still on screen: #speedup reads "${speedup}"`);
    const hidden = await page.$eval('#compare-charts', (element) => element.hidden);
    check(hidden, 'the old comparison charts are still shown');
    await screenshot('serve-page-failed.png');
  }],
  ['a phone (360 px): nothing scrolls sideways, the chart fits and the table folds', async () => {
    await page.setViewportSize({ width: 360, height: 800 });
    for (const source of ['weather', 'news', 'kb']) await page.selectOption(`#fault-${source}`, 'none');
    await page.click('#ask');
    await page.waitForFunction(() => ['ok', 'degraded'].includes(document.querySelector('#answer-status')?.textContent.trim())
      && document.querySelector('#gantt .bar[data-activity="infer"]'), null, { timeout: WAIT_TIMEOUT_MS });
    // The chart is laid out again on resize; give it a frame.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    const fit = await page.evaluate(() => {
      const svg = document.querySelector('#gantt');
      const row = document.querySelector('#sources tbody tr');
      return {
        page: document.documentElement.scrollWidth, viewport: window.innerWidth,
        chart: svg.getBoundingClientRect().width, box: svg.parentElement.clientWidth,
        row: getComputedStyle(row).display, cell: getComputedStyle(row.querySelector('.status')).display,
        inferRight: Math.max(...[...document.querySelectorAll('#gantt .bar[data-activity="infer"] rect')]
          .map((rect) => rect.getBoundingClientRect().right)),
      };
    });
    check(fit.page <= fit.viewport, `the page scrolls sideways: ${JSON.stringify(fit)}`);
    check(fit.chart <= fit.box + 1, `the chart is wider than its box: ${JSON.stringify(fit)}`);
    check(fit.inferRight <= fit.viewport, `an inference bar is off screen: ${JSON.stringify(fit)}`);
    check(fit.row === 'block' && fit.cell === 'block', `the table does not fold: ${JSON.stringify(fit)}`);
    await screenshot('serve-page-phone.png');
    await page.setViewportSize({ width: 1400, height: 900 });
  }],
  ['a source whose circuit opened wears a badge, and its result says it came from the open circuit', async () => {
    await page.selectOption('#fault-news', 'error');
    // The breaker opens after enough failed calls in its window: ask until the badge shows (two or three asks).
    for (let ask = 0; ask < 5; ask += 1) {
      await page.click('#ask');
      await page.waitForFunction(() => /^Run \S+ (answered|failed|cancelled)\.$/.test(
        document.querySelector('#run-status')?.textContent.trim() ?? ''), null, { timeout: WAIT_TIMEOUT_MS });
      await page.waitForTimeout(300);
      if (await page.$eval('tr[data-source="news"] .circuit', (badge) => !badge.hidden)) break;
    }
    const badge = await textOf('tr[data-source="news"] .circuit');
    check(badge === 'circuit open', `the news row's circuit badge reads "${badge}"`);
    const note = await textOf('#circuit-note');
    check(note.includes('news (open)') && note.includes('shared'), `the circuit note reads "${note}"`);
    await page.click('#ask');
    await page.waitForFunction(() => document.querySelector('#sources tr[data-source="news"] .status')
      ?.textContent.trim() === 'circuit open', null, { timeout: WAIT_TIMEOUT_MS });
    const failure = await page.$eval('#sources tr[data-source="news"] .failure', (badge) => badge.dataset.failure);
    check(failure === 'circuit_open', `the news row's failure badge is ${JSON.stringify(failure)}`);
    const after = await textOf('#circuit-note');
    check(after.includes('comes from the open circuit'), `the circuit note reads "${after}"`);
    await screenshot('serve-page-circuit.png');
  }],
  ['the trace link downloads a Chrome trace', async () => {
    const href = await page.$eval('#trace', (link) => link.href);
    check(href.includes('/v1/runs/'), `the trace link points at "${href}"`);
    const trace = await page.evaluate(async (url) => {
      const response = await fetch(url);
      const text = await response.text();
      try {
        const body = JSON.parse(text);
        return { status: response.status, isArray: Array.isArray(body.traceEvents), events: body.traceEvents?.length };
      } catch {
        return { status: response.status, text: text.slice(0, 200) };
      }
    }, href);
    check(trace.status === 200, `GET ${href} answered ${trace.status}`);
    check(trace.isArray && trace.events > 0, `GET ${href} gave no traceEvents array: ${JSON.stringify(trace)}`);
  }],
];

/** With a chat model that writes a word every 300 ms (the `writing` script). */
const writingSteps = [
  ["ask, and each source's words appear under the answer while it waits", async () => {
    await page.goto(`${baseUrl}/`);
    await page.waitForSelector('#fault-news option[value="hang"]', { state: 'attached', timeout: WAIT_TIMEOUT_MS });
    await page.fill('#question', 'Should I take an umbrella in Lisbon?');
    await page.click('#ask');
    await page.waitForFunction(() => {
      const line = document.querySelector('#answer-live li[data-source="weather"]')?.textContent ?? '';
      return line.includes('Take') && !line.includes('umbrella')
        && document.querySelector('#answer-status')?.textContent.trim() === 'waiting';
    }, null, { timeout: WAIT_TIMEOUT_MS }).catch(async (error) => {
      throw new Error(`no words while waiting: #answer-live reads "${await textOf('#answer-live')}", the status "${await textOf('#answer-status')}" (${error.message})`);
    });
    await screenshot('serve-page-writing.png');
  }],
  ['the answer takes their place, marked as generated', async () => {
    await page.waitForFunction(() => document.querySelector('#answer-status')?.textContent.trim() === 'ok',
      null, { timeout: WAIT_TIMEOUT_MS });
    const answer = await textOf('#answer-text');
    check(answer.includes('Take an umbrella. (generated by tiny-chat)'), `the answer reads "${answer}"`);
    const hidden = await page.$eval('#answer-live', (list) => list.hidden && list.children.length === 0);
    check(hidden, 'the words were not cleared when the answer came');
  }],
];

const scripts = { run: steps, writing: writingSteps };
const chosen = scripts[process.env.STEPS ?? 'run'];
if (!chosen) {
  console.error(`FAIL: STEPS must be one of ${Object.keys(scripts).join(', ')}`);
  process.exit(1);
}

setTimeout(() => fail(new Error(`gave up after ${OVERALL_TIMEOUT_MS / 1000} s`)), OVERALL_TIMEOUT_MS);

try {
  browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(WAIT_TIMEOUT_MS);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  for (const [index, [title, run]] of chosen.entries()) {
    await run();
    check(pageErrors.length === 0, `the page threw: ${pageErrors.join('; ')}`);
    console.log(`ok ${index + 1} - ${title}`);
  }
  await within(CLEANUP_TIMEOUT_MS, browser.close());
  process.exit(0);
} catch (error) {
  await fail(error);
}
