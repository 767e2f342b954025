// Builds the package in the current directory twice from its tsconfig.build.json:
// ESM into dist/esm and CommonJS into dist/cjs, so that its `exports` map can
// serve both `import` and `require` callers with their own type declarations.
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'

const require = createRequire(import.meta.url)
const tsc = join(require.resolve('typescript/package.json'), '..', 'bin', 'tsc')

function run(args: string[]): void {
  const result = spawnSync(process.execPath, [tsc, ...args], { stdio: 'inherit' })
  if (result.status !== 0) process.exit(result.status ?? 1)
}

rmSync('dist', { recursive: true, force: true })
run(['-p', 'tsconfig.build.json', '--outDir', 'dist/esm'])
run([
  '-p',
  'tsconfig.build.json',
  '--outDir',
  'dist/cjs',
  '--module',
  'commonjs',
  '--moduleResolution',
  'bundler',
  '--verbatimModuleSyntax',
  'false',
])

// dist/cjs gets its own package.json, which makes it a separate package scope:
// it must say "commonjs" and repeat the package's private `imports` (#crypto),
// pointed at the CommonJS files. They are derived from the source mapping.
type Conditions = { [condition: string]: string | Conditions }
const manifest = JSON.parse(readFileSync('package.json', 'utf8')) as {
  imports?: Record<string, Conditions>
}
const toCjs = (target: string | Conditions): string | Conditions =>
  typeof target === 'string'
    ? target.replace(/^\.\/src\//, './').replace(/\.ts$/, '.js')
    : Object.fromEntries(Object.entries(target).map(([k, v]) => [k, toCjs(v)]))
const imports = Object.fromEntries(
  Object.entries(manifest.imports ?? {}).map(([name, conditions]) => {
    const source = conditions['@online-record/source']
    if (source === undefined)
      throw new Error(`imports ${name} has no @online-record/source mapping`)
    return [name, toCjs(source)]
  }),
)
mkdirSync(join('dist', 'cjs'), { recursive: true })
writeFileSync(
  join('dist', 'cjs', 'package.json'),
  `${JSON.stringify({ type: 'commonjs', ...(manifest.imports ? { imports } : {}) }, null, 2)}\n`,
)
