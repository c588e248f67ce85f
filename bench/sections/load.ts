/**
 * Section 6: what loading costs. Each case is a fresh `node` process that
 * loads one thing and reports its CPU time, its wall time since the process
 * began (`performance.now()`, Node's own start-up included) and its RSS:
 *
 * - `node` alone (an empty module): the floor;
 * - Effect through its barrel, `import … from "effect"`, which loads every
 *   module of the package;
 * - `effect/Effect` alone;
 * - sandbox-docker's index, which loads Effect's modules one by one;
 * - the CLI answering `--version` (everything `sandbox-docker up` loads
 *   before it can spawn dockerd), as it ships: one file, bundled with its
 *   dependencies by esbuild (`npm run build`);
 * - the same CLI with its dependencies loaded from `node_modules` module by
 *   module, as it shipped before: the baseline of the bundling.
 *
 * The library is bundled with esbuild, packages external (as in the scale
 * section), so it is measured as JavaScript with the same module graph below
 * it, not through the TypeScript loader. Rounds run the cases in a random
 * order, so the machine's drift reaches all alike.
 */
import { writeFileSync } from "node:fs"
import { BUILD_DIR, bundle } from "../lib/bundle.js"
import { workerResult } from "../lib/helpers.js"
import { round, summarize, type Summary } from "../lib/stats.js"

/** One case's figures over its runs. */
export interface LoadCase {
  readonly name: string
  readonly runs: number
  readonly cpuMs: Summary
  readonly wallMs: Summary
  readonly rssMb: Summary
}

/**
 * A module that loads `target` (a module specifier or a file) and prints its
 * figures as the process exits (the CLI ends with `process.exit`; writes to
 * a pipe are synchronous on Linux).
 */
const loader = (target: string | undefined, argv: ReadonlyArray<string> = []) => `
process.on("exit", () => {
  const cpu = process.cpuUsage()
  process.stdout.write("\\n" + JSON.stringify({
    cpuMs: (cpu.user + cpu.system) / 1000,
    wallMs: performance.now(),
    rssMb: process.memoryUsage().rss / 1048576
  }) + "\\n")
})
${target === undefined ? "" : `process.argv.push(...${JSON.stringify(argv)})\nawait import(${JSON.stringify(target)})`}
`

/** Runs one case once in a fresh process. */
const once = (file: string) =>
  workerResult<{ cpuMs: number; wallMs: number; rssMb: number }>([process.execPath, file], file)

/** Measures every case `runs` times, interleaved. */
export const run = async (runs: number, log: (line: string) => void) => {
  const library = await bundle("../src/index.ts", "library.mjs")
  // As `npm run build` makes it, and as it was before that bundled it.
  const cli = await bundle("../bin/sandbox-docker.ts", "cli.mjs", "bundled")
  const cliUnbundled = await bundle("../bin/sandbox-docker.ts", "cli-modules.mjs")
  const cases: ReadonlyArray<{ name: string; source: string }> = [
    { name: "node alone", source: loader(undefined) },
    { name: 'Effect, its barrel ("effect")', source: loader("effect") },
    { name: '"effect/Effect" alone', source: loader("effect/Effect") },
    { name: "sandbox-docker (its index)", source: loader(library) },
    { name: "the CLI, `--version`, bundled (as shipped)", source: loader(cli, ["--version"]) },
    {
      name: "the CLI, `--version`, modules from node_modules",
      source: loader(cliUnbundled, ["--version"])
    }
  ]
  const files = cases.map((one, i) => {
    const file = `${BUILD_DIR}load-${i}.mjs`
    writeFileSync(file, one.source)
    return file
  })
  const samples = cases.map(() => [] as Array<{ cpuMs: number; wallMs: number; rssMb: number }>)
  for (let round_ = 0; round_ < runs; round_++) {
    const order = cases.map((_, i) => i).sort(() => Math.random() - 0.5)
    for (const i of order) samples[i]?.push(await once(files[i] as string))
  }
  const results: Array<LoadCase> = cases.map((one, i) => {
    const mine = samples[i] ?? []
    return {
      name: one.name,
      runs: mine.length,
      cpuMs: summarize(mine.map((s) => s.cpuMs)),
      wallMs: summarize(mine.map((s) => s.wallMs)),
      rssMb: summarize(mine.map((s) => s.rssMb))
    }
  })
  for (const one of results) {
    log(
      `  load: ${one.name}: CPU p50 ${round(one.cpuMs.p50)} ms, wall p50 ${round(one.wallMs.p50)} ms, RSS p50 ${round(one.rssMb.p50, 1)} MB`
    )
  }
  return results
}
