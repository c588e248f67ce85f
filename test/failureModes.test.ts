/**
 * docs/failure-modes.md's last table names, for every typed error, every
 * diagnosis cause and every exit code in the sources, the test that makes
 * it happen. This reads the sources as they are (whoever added what) and
 * the table, so neither can drift from the other: an error, cause or code
 * without a row fails, and so does a row whose test is not in its file.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const read = (file: string) => readFileSync(Path.join(root, file), "utf8")

const sourceFiles = (dir: string): ReadonlyArray<string> =>
  readdirSync(Path.join(root, dir), { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => Path.join(dir, file))

/** Tags of `Schema.TaggedError`s anywhere in src/, and the tagged classes of src/errors.ts. */
const errorTags = (): ReadonlyArray<string> => {
  const tags = new Set<string>()
  for (const file of sourceFiles("src")) {
    const text = read(file)
    for (const m of text.matchAll(/Schema\.TaggedError<\w+>\(\)\(\s*"(\w+)"/g)) tags.add(m[1]!)
    if (file === Path.join("src", "errors.ts")) {
      for (const m of text.matchAll(/Schema\.TaggedClass<\w+>\(\)\(\s*"(\w+)"/g)) tags.add(m[1]!)
    }
  }
  return [...tags].sort()
}

/** The causes `Diagnosis` knows. */
const causes = (): ReadonlyArray<string> =>
  [...read("src/Diagnosis.ts").matchAll(/^\s+cause: "([\w-]+)"/gm)].map((m) => m[1]!).sort()

/** The values of the CLI's `ExitCode` object. */
const exitCodes = (): ReadonlyArray<string> => {
  const text = read("src/cli/ExitCode.ts")
  const body = /export const ExitCode = \{([\s\S]*?)\n\}/.exec(text)?.[1] ?? ""
  return [...body.matchAll(/^\s+\w+: (\d+),?\s*$/gm)].map((m) => m[1]!).sort()
}

interface Row {
  readonly kind: "error" | "diagnosis" | "exit"
  readonly name: string
  readonly file: string
  readonly test: string
}

/** The rows of the table `| kind | `name` | `test/…` | test | how |`. */
const rows = (): ReadonlyArray<Row> => {
  const section = read("docs/failure-modes.md").split(
    "## Which test produces each error, diagnosis and exit code"
  )[1]
  if (section === undefined) throw new Error("docs/failure-modes.md has no 'Which test' section")
  return section.split("\n").flatMap((line) => {
    const m =
      /^\|\s*(error|diagnosis|exit)\s*\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|/.exec(line)
    return m === null ? [] : [{ kind: m[1] as Row["kind"], name: m[2]!, file: m[3]!, test: m[4]! }]
  })
}

describe("docs/failure-modes.md: which test produces each", () => {
  const table = rows()
  const named = (kind: Row["kind"]) =>
    new Set(table.filter((r) => r.kind === kind).map((r) => r.name))

  it("reads what it checks: the sources have errors, causes and exit codes, the table rows", () => {
    expect(errorTags()).toContain("DaemonCrashed")
    expect(causes()).toContain("unknown-flag")
    expect(exitCodes()).toEqual(expect.arrayContaining(["0", "2", "70"]))
    expect(table.length).toBeGreaterThan(10)
  })

  it("every typed error in the sources has a row", () => {
    expect(errorTags().filter((tag) => !named("error").has(tag))).toEqual([])
  })

  it("every diagnosis cause has a row", () => {
    expect(causes().filter((cause) => !named("diagnosis").has(cause))).toEqual([])
  })

  it("every exit code has a row", () => {
    expect(exitCodes().filter((code) => !named("exit").has(code))).toEqual([])
  })

  it("no row names what the sources no longer have", () => {
    const known = { error: errorTags(), diagnosis: causes(), exit: exitCodes() }
    expect(table.filter((row) => !known[row.kind].includes(row.name))).toEqual([])
  })

  it("every row's test is in its file, and the file names what the row says it produces", () => {
    const wrong = table.flatMap((row) => {
      if (!existsSync(Path.join(root, row.file))) return [`${row.file}: no such file`]
      const text = read(row.file)
      const problems: Array<string> = []
      if (!text.includes(row.test)) problems.push(`${row.file}: no test "${row.test}"`)
      const mention = row.kind === "exit" ? new RegExp(`\\b${row.name}\\b`) : row.name
      if (!(typeof mention === "string" ? text.includes(mention) : mention.test(text)))
        problems.push(`${row.file} never mentions ${row.name}`)
      return problems
    })
    expect(wrong).toEqual([])
  })
})
