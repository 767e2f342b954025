// `npm test`: runs every test file with Node's test runner on the workspace
// sources. Suites that need PostgreSQL (`*.pg.test.ts`) run only when
// TEST_DATABASE_URL is set, suites that mount small file systems to fill
// them (`*.root.test.ts`) only as root, and suites that drive a browser
// (`*.browser.test.ts`) only where Debian's chromium is installed
// (/usr/bin/chromium; CI installs it); the ones left out are listed, never
// silently dropped.
import { spawnSync } from 'node:child_process'
import { existsSync, globSync } from 'node:fs'

const patterns = [
  'packages/*/src/**/*.test.ts',
  'packages/*/test/**/*.test.ts',
  'test/**/*.test.ts',
]
const files = patterns
  .flatMap((p) => globSync(p, { exclude: (f) => f.includes('node_modules') }))
  .sort()
const needsPostgres = (f: string): boolean => f.endsWith('.pg.test.ts')
const needsRoot = (f: string): boolean => f.endsWith('.root.test.ts')
const needsBrowser = (f: string): boolean => /\.browser\.(pg\.)?test\.ts$/.test(f)
const databaseUrl = process.env.TEST_DATABASE_URL
const root = process.getuid?.() === 0
const browser = existsSync('/usr/bin/chromium')
const selected = files.filter(
  (f) =>
    (databaseUrl || !needsPostgres(f)) && (root || !needsRoot(f)) && (browser || !needsBrowser(f)),
)
const left = files.filter((f) => !selected.includes(f))

const extra = process.argv.slice(2)
const result = spawnSync(
  process.execPath,
  [
    '--conditions=@online-record/source',
    '--test',
    '--test-concurrency=2',
    // A test that hangs fails after 5 minutes instead of holding the run up.
    '--test-timeout=300000',
    ...extra,
    ...selected,
  ],
  { stdio: 'inherit' },
)

const pg = files.filter(needsPostgres)
if (databaseUrl) {
  console.log(
    `\nPostgreSQL suites ran against TEST_DATABASE_URL: ${pg.length === 0 ? 'none exist yet' : pg.join(', ')}`,
  )
}
if (root)
  console.log(
    `Suites that fill small file systems ran as root: ${files.filter(needsRoot).join(', ')}`,
  )
if (left.length > 0) {
  console.log(
    `\nNot run: ${left.join(', ')} (set TEST_DATABASE_URL to a PostgreSQL database for *.pg.test.ts; run as root for *.root.test.ts; install chromium (apt-get install chromium) for *.browser.test.ts)`,
  )
}
process.exit(result.status ?? 1)
