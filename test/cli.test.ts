/**
 * The `sandbox-docker` CLI run as a user runs it: the built binary, real
 * dockerd, exit codes and JSON events.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createInterface } from "node:readline"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { hasDockerd, leftovers, removeDir, tempDir } from "./support/isolated.js"

const BIN = "dist/bin/sandbox-docker.js"
const real = hasDockerd()
const dirs: Array<string> = []

beforeAll(() => {
  if (!existsSync(BIN))
    execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" })
})

afterEach(async () => {
  for (const dir of dirs.splice(0)) {
    expect(await leftovers(dir)).toEqual([])
    removeDir(dir)
  }
})

interface Running {
  readonly child: ChildProcess
  readonly lines: Array<string>
  readonly stderr: Array<string>
  /** Resolves with the first JSON event that satisfies `predicate`. */
  readonly waitFor: (
    predicate: (event: Record<string, unknown>) => boolean
  ) => Promise<Record<string, unknown>>
  readonly exit: Promise<number | null>
}

const start = (args: ReadonlyArray<string>): Running => {
  const child = spawn("node", [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] })
  const lines: Array<string> = []
  const stderr: Array<string> = []
  const waiters: Array<{
    predicate: (e: Record<string, unknown>) => boolean
    resolve: (e: Record<string, unknown>) => void
  }> = []
  createInterface({ input: child.stdout! }).on("line", (line) => {
    lines.push(line)
    try {
      const event = JSON.parse(line) as Record<string, unknown>
      for (const waiter of waiters.filter((w) => w.predicate(event))) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve(event)
      }
    } catch {
      // a human line
    }
  })
  createInterface({ input: child.stderr! }).on("line", (line) => stderr.push(line))
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  return {
    child,
    lines,
    stderr,
    exit,
    waitFor: (predicate) =>
      new Promise((resolve, reject) => {
        const found = lines.map((l) => safeParse(l)).find((e) => e !== undefined && predicate(e))
        if (found) return resolve(found)
        waiters.push({ predicate, resolve })
        void exit.then((code) =>
          reject(new Error(`exited ${code} first:\n${lines.join("\n")}\n${stderr.join("\n")}`))
        )
      })
  }
}

const safeParse = (line: string): Record<string, unknown> | undefined => {
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}

const isolatedArgs = (dir: string) => [
  `--socket=${dir}/docker.sock`,
  "--data-root",
  `${dir}/data`,
  `--exec-root=${dir}/exec`,
  "--pidfile",
  `${dir}/docker.pid`,
  "--network=private"
]

const noStackTrace = (output: ReadonlyArray<string>) =>
  expect(output.filter((line) => /^\s+at /.test(line))).toEqual([])

describe("sandbox-docker (no daemon needed)", () => {
  it("--help lists the commands; up --help lists the exit codes", () => {
    const root = execFileSync("node", [BIN, "--help"], { encoding: "utf8" })
    expect(root).toContain("up")
    expect(root).toContain("wait")
    const up = execFileSync("node", [BIN, "up", "--help"], { encoding: "utf8" })
    for (const code of ["0 ", "2 ", "3 ", "4 ", "5 ", "6 "]) expect(up).toContain(`  ${code}`)
  })

  it.each([
    [["up", "--deadline=-1s"], "deadline"],
    [["up", "--deadline", "soon"], "deadline"],
    [["up", "--profile", "nope"], "default, sandbox, gvisor"],
    [["up", "--socket", "relative.sock"], "socket"],
    [["up", "--arg", "no-dash"], "not a flag"],
    [["up", "--no-such-option"], "no-such-option"],
    [["wait"], "socket"]
  ])("bad input %j exits 2 naming the problem, without a stack trace", async (args, needle) => {
    const run = start(args)
    expect(await run.exit).toBe(2)
    const output = [...run.lines, ...run.stderr]
    expect(output.join("\n")).toContain(needle)
    noStackTrace(output)
  })

  it("a missing dockerd exits 3 with the install hint, as a JSON error event", async () => {
    const run = start(["up", "--dockerd", "/nonexistent/dockerd", "--json"])
    expect(await run.exit).toBe(3)
    const error = await run.waitFor((e) => e.event === "error")
    expect(error).toMatchObject({ error: "DockerNotInstalled", binary: "/nonexistent/dockerd" })
    expect(String(error.message)).toContain("apt-get install docker.io")
  })

  it("wait on a socket nobody serves exits 5 at the deadline", async () => {
    const dir = tempDir()
    dirs.push(dir)
    const run = start(["wait", "--socket", `${dir}/none.sock`, "--deadline", "300ms", "--json"])
    expect(await run.exit).toBe(5)
    const error = await run.waitFor((e) => e.event === "error")
    expect(error).toMatchObject({ error: "DaemonNotReady", deadlineMs: 300 })
  })
})

describe.skipIf(!real)("sandbox-docker against a real dockerd", () => {
  it("up: ready event with its fields; SIGTERM stops the daemon and exits 0", async () => {
    const dir = tempDir()
    dirs.push(dir)
    const run = start(["up", ...isolatedArgs(dir), "--json"])
    const ready = await run.waitFor((e) => e.event === "ready")
    expect(ready).toMatchObject({ socket: `${dir}/docker.sock` })
    expect(ready.pid).toEqual(expect.any(Number))
    expect(ready.elapsedMs).toEqual(expect.any(Number))
    expect(ready.attempts).toEqual(expect.any(Number))
    expect(ready.serverVersion).toMatch(/^\d+\.\d+/)

    // wait, on the daemon that up started, exits 0.
    const waiter = start(["wait", "--socket", `${dir}/docker.sock`, "--pid", String(ready.pid)])
    expect(await waiter.exit).toBe(0)
    expect(waiter.lines.join("\n")).toContain("ready:")

    run.child.kill("SIGTERM")
    expect(await run.exit).toBe(0)
    expect(run.lines.map(safeParse).map((e) => e?.event)).toContain("stopped")
  })

  it("up: an unknown flag exits 4 with the log tail and a diagnosis", async () => {
    const dir = tempDir()
    dirs.push(dir)
    const run = start(["up", ...isolatedArgs(dir), "--arg=--no-such-flag", "--json"])
    expect(await run.exit).toBe(4)
    const error = await run.waitFor((e) => e.event === "error")
    expect(error).toMatchObject({
      error: "DaemonCrashed",
      exitCode: 1,
      diagnosis: { cause: "unknown-flag" }
    })
    expect((error.logTail as Array<string>).join("\n")).toContain("--no-such-flag")
  })

  it("up: the daemon killed after ready, no restart left: exits 6", async () => {
    const dir = tempDir()
    dirs.push(dir)
    const run = start(["up", ...isolatedArgs(dir), "--json"])
    const ready = await run.waitFor((e) => e.event === "ready")
    process.kill(ready.pid as number, "SIGKILL")
    expect(await run.exit).toBe(6)
    const error = await run.waitFor((e) => e.event === "error")
    expect(error).toMatchObject({ error: "DaemonDied", signal: "SIGKILL" })
  })

  it("up --restart on-failure: killed after ready, restarted and ready again", async () => {
    const dir = tempDir()
    dirs.push(dir)
    const run = start([
      "up",
      ...isolatedArgs(dir),
      "--restart",
      "on-failure",
      "--max-restarts=1",
      "--json"
    ])
    const first = await run.waitFor((e) => e.event === "ready")
    process.kill(first.pid as number, "SIGKILL")
    await run.waitFor((e) => e.event === "restarting")
    const second = await run.waitFor((e) => e.event === "ready" && e.pid !== first.pid)
    expect(second.restarts).toBe(1)
    run.child.kill("SIGINT")
    expect(await run.exit).toBe(0)
  })
})
