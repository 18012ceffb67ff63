#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// Peer benchmark: the npm package cron-parser, run by run.sh next to
// bench-cron. Same cases and output as bench-cron.c: for each expression and
// zone, one parsed expression with the tz option and currentDate at the start
// instant, then chained next() calls, going back to the start with reset()
// once the answers pass the year 2400. Median of --runs runs of at least
// --min-time seconds (process.hrtime, monotonic), one line per case:
// "EXPR<TAB>ZONE<TAB>MEDIAN<TAB>RUN,RUN,...", or "EXPR<TAB>ZONE<TAB>unsupported".
//
// --dump N --from EPOCH prints the first N fire times after EPOCH instead,
// "EXPR<TAB>ZONE<TAB>2026-01-04T02:00:00Z", also for a DST probe that is not timed.
//
// cron-parser is installed on first use into node/ next to this file
// (git-ignored): npm install --prefix <here>/node cron-parser.
'use strict';

const child_process = require('child_process');
const fs = require('fs');
const path = require('path');

const EXPRS = ['0 3 * * SUN#1', '*/15 9-17 * * MON-FRI', '0 0 L * *', '30 2 29 2 *'];
// Only dumped: a weekly slot inside Europe/Berlin's spring-forward gap and its
// fall-back overlap, to compare the DST rules.
const DST_PROBE = '30 2 * * SUN';
const ZONES = ['UTC', 'Europe/Berlin'];
const START = 1767225600; // 2026-01-01T00:00:00Z
const WRAP_MS = 13569465600 * 1000; // 2400-01-01T00:00:00Z
const BATCH = 64;

function loadCronParser() {
  const prefix = path.join(__dirname, 'node');
  const dir = path.join(prefix, 'node_modules', 'cron-parser');
  if (!fs.existsSync(path.join(dir, 'package.json'))) {
    child_process.execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', prefix, 'cron-parser'], {
      stdio: ['ignore', process.stderr, process.stderr],
    });
  }
  const mod = require(dir);
  const version = require(path.join(dir, 'package.json')).version;
  // 5.x: CronExpressionParser.parse(); 4.x and older: parseExpression().
  const parse = mod.CronExpressionParser
    ? (expr, opts) => mod.CronExpressionParser.parse(expr, opts)
    : (expr, opts) => mod.parseExpression(expr, opts);
  return { parse, version };
}

function parseArgs(argv) {
  const args = { dump: 0, from: START, runs: 5, minTime: 0.5 };
  const names = { '--dump': 'dump', '--from': 'from', '--runs': 'runs', '--min-time': 'minTime' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    const value = Number(argv[i + 1]);
    if (!key || !Number.isFinite(value)) {
      process.stderr.write(`usage: peer-cron-parser.js [--runs N] [--min-time S] | --dump N --from EPOCH\n`);
      process.exit(1);
    }
    args[key] = value;
  }
  return args;
}

function nowSec() {
  return Number(process.hrtime.bigint()) / 1e9;
}

function benchRun(interval, start, minTime) {
  let calls = 0;
  const t0 = nowSec();
  for (;;) {
    for (let i = 0; i < BATCH; i++) {
      if (interval.next().getTime() >= WRAP_MS) interval.reset(start);
    }
    calls += BATCH;
    const elapsed = nowSec() - t0;
    if (elapsed >= minTime) return calls / elapsed;
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const { parse } = loadCronParser();

  for (const expr of args.dump ? [...EXPRS, DST_PROBE] : EXPRS) {
    for (const zone of ZONES) {
      const start = new Date((args.dump ? args.from : START) * 1000);
      let interval;
      try {
        interval = parse(expr, { currentDate: start, tz: zone });
      } catch (e) {
        console.log(`${expr}\t${zone}\tunsupported`);
        continue;
      }
      if (args.dump) {
        for (let i = 0; i < args.dump; i++) {
          let t;
          try {
            t = interval.next().getTime();
          } catch (e) {
            console.log(`${expr}\t${zone}\terror: ${e.message}`);
            break;
          }
          console.log(`${expr}\t${zone}\t${new Date(t).toISOString().replace(/\.\d+Z$/, 'Z')}`);
        }
        continue;
      }
      benchRun(interval, start, args.minTime / 5); // warm-up, lets the JIT settle
      interval.reset(start);
      const rates = [];
      for (let i = 0; i < args.runs; i++) rates.push(benchRun(interval, start, args.minTime));
      console.log(`${expr}\t${zone}\t${median(rates).toFixed(0)}\t${rates.map((r) => r.toFixed(0)).join(',')}`);
    }
  }
}

if (process.argv.includes('--version')) {
  console.log(loadCronParser().version);
} else {
  main();
}
