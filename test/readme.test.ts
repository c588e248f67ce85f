/**
 * The README's code compiles and its docs stay short. Each ```ts block of
 * README.md is written to a file of its own under `test/.tmp-readme/`
 * (ignored by git, lint and prettier), its imports of `sandbox-docker` and
 * `sandbox-docker/test` pointed at the sources, and the files are
 * type-checked together with the repository's compiler options (so an unused
 * import fails too). A failure names the README's line.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { afterAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const snippetDir = Path.join(root, "test", ".tmp-readme")
const readme = readFileSync(Path.join(root, "README.md"), "utf8")

interface Snippet {
  /** The README's line of the block's first code line (1-based). */
  readonly line: number
  readonly code: string
}

/** Every ```ts block of a markdown text, with the line it starts on. */
const tsBlocks = (markdown: string): ReadonlyArray<Snippet> => {
  const lines = markdown.split("\n")
  const blocks: Array<Snippet> = []
  let start: number | undefined
  let body: Array<string> = []
  lines.forEach((text, index) => {
    if (start === undefined) {
      if (/^```(ts|typescript)\s*$/.test(text)) {
        start = index + 2
        body = []
      }
    } else if (/^```\s*$/.test(text)) {
      blocks.push({ line: start, code: body.join("\n") + "\n" })
      start = undefined
    } else {
      body.push(text)
    }
  })
  return blocks
}

/** The package's own specifiers, pointed at its sources as a user's import resolves them. */
const toSources = (code: string): string =>
  code
    .replace(/(from\s+)"sandbox-docker\/test"/g, '$1"../../src/testing.js"')
    .replace(/(from\s+)"sandbox-docker"/g, '$1"../../src/index.js"')

const compilerOptions = (): ts.CompilerOptions => {
  const file = Path.join(root, "tsconfig.json")
  const read = ts.readConfigFile(file, (path) => ts.sys.readFile(path))
  if (read.error !== undefined) throw new Error(ts.formatDiagnostic(read.error, formatHost))
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, root, undefined, file)
  return { ...parsed.options, noEmit: true, declaration: false, sourceMap: false }
}

const formatHost: ts.FormatDiagnosticsHost = {
  getCanonicalFileName: (name) => name,
  getCurrentDirectory: () => root,
  getNewLine: () => "\n"
}

const snippets = tsBlocks(readme)

afterAll(() => rmSync(snippetDir, { recursive: true, force: true }))

describe("README.md", () => {
  it("has TypeScript examples: a Layer and a TestClock test at least", () => {
    expect(snippets.length).toBeGreaterThanOrEqual(2)
    expect(readme).toContain("Dockerd.layer(")
    expect(readme).toContain("TestClock.adjust(")
  })

  it("every ```ts block type-checks against the library", { timeout: 180_000 }, () => {
    rmSync(snippetDir, { recursive: true, force: true })
    mkdirSync(snippetDir, { recursive: true })
    const files = snippets.map((snippet, index) => {
      const file = Path.join(snippetDir, `snippet${index + 1}.ts`)
      const code = toSources(snippet.code)
      // A block without imports would be a script sharing one global scope with the others.
      writeFileSync(file, /^\s*(import|export)\s/m.test(code) ? code : `${code}export {}\n`)
      return { file, snippet }
    })
    const program = ts.createProgram(
      files.map(({ file }) => file),
      compilerOptions()
    )
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file === undefined || files.some(({ file }) => samePath(file, d.file!)))
      .map((d) => {
        const message = ts.flattenDiagnosticMessageText(d.messageText, "\n")
        const origin = d.file && files.find(({ file }) => samePath(file, d.file!))
        if (d.file === undefined || origin === undefined || d.start === undefined) return message
        const { line } = d.file.getLineAndCharacterOfPosition(d.start)
        return `README.md:${origin.snippet.line + line}: ${message}`
      })
    expect(problems, problems.join("\n")).toEqual([])
  })

  it("links only files that exist", () => {
    const links = [...readme.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)]
      .map((match) => match[1]!)
      .filter((target) => !/^[a-z]+:/.test(target))
    expect(links.length).toBeGreaterThan(0)
    const missing = links.filter((target) => {
      try {
        statSync(Path.join(root, target))
        return false
      } catch {
        return true
      }
    })
    expect(missing).toEqual([])
  })
})

describe("docs stay short", () => {
  it.each([
    ["README.md", 20],
    ["docs/architecture.md", 15],
    ["docs/performance.md", 14]
  ])("%s is at most %i KB", (file, kb) => {
    expect(statSync(Path.join(root, file)).size).toBeLessThanOrEqual(kb * 1024)
  })
})

const samePath = (file: string, source: ts.SourceFile): boolean =>
  Path.resolve(file) === Path.resolve(source.fileName)
