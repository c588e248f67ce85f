/**
 * The `sandbox-docker` CLI run as a user runs it: the built binary, real
 * dockerd, exit codes and JSON events.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { afterEach, describe, expect, it } from "vitest"
import { readPidfile } from "../src/internal/processTree.js"
import { errorEvent, noStackTrace, run, start } from "./support/cli.js"
import { hasDockerd, leftovers, removeDir, tempDir } from "./support/isolated.js"
import * as Effect from "effect/Effect"

const BREAK_PROC_READS = "./test/fixtures/break-proc-reads.mjs"
const real = hasDockerd()
const dirs: Array<string> = []
const children: Array<ChildProcess> = []

afterEach(async () => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
  for (const dir of dirs.splice(0)) {
    expect(await leftovers(dir)).toEqual([])
    removeDir(dir)
  }
})

const newDir = () => {
  const dir = tempDir()
  dirs.push(dir)
  return dir
}

/** A `sleep` this test owns (killed after it). */
const sleeper = () => {
  const child = spawn("sleep", ["600"], { stdio: "ignore" })
  children.push(child)
  return child
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

describe("sandbox-docker (no daemon needed)", () => {
  it("--help lists the commands; up --help lists the exit codes", async () => {
    const root = await run(["--help"])
    expect(root.code).toBe(0)
    expect(root.stdout).toContain("up")
    expect(root.stdout).toContain("wait")
    const up = await run(["up", "--help"])
    for (const code of ["0 ", "2 ", "3 ", "4 ", "5 ", "6 "])
      expect(up.stdout).toContain(`  ${code}`)
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
    const result = await run(args)
    expect(result.code).toBe(2)
    const output = `${result.stdout}\n${result.stderr}`
    expect(output).toContain(needle)
    noStackTrace(output)
  })

  it("bad input with --json: exit 2 and an InvalidArguments or InvalidUsage event naming the problem", async () => {
    const result = await run(["up", "--deadline=soon", "--json"])
    expect(result.code).toBe(2)
    expect(errorEvent(result.events)).toMatchObject({
      error: "InvalidArguments",
      option: "deadline",
      problem: expect.any(String)
    })
    const unknown = await run(["up", "--no-such-option", "--json"])
    expect(unknown.code).toBe(2)
    expect(errorEvent(unknown.events)).toMatchObject({
      error: "InvalidUsage",
      problem: expect.stringContaining("no-such-option")
    })
  })

  it("a missing dockerd exits 3 with the install hint, as a JSON error event", async () => {
    const result = await run(["up", "--dockerd", "/nonexistent/dockerd", "--json"])
    expect(result.code).toBe(3)
    const error = errorEvent(result.events)
    expect(error).toMatchObject({
      error: "DockerNotInstalled",
      binary: "/nonexistent/dockerd",
      searched: ["/nonexistent/dockerd"]
    })
    expect(String(error.message)).toContain("apt-get install docker.io")
    expect(result.events.some((event) => event.event === "spawned")).toBe(false)
  })

  it("wait on a socket nobody serves exits 5 at the deadline", async () => {
    const dir = newDir()
    const result = await run([
      "wait",
      "--socket",
      `${dir}/none.sock`,
      "--deadline",
      "300ms",
      "--json"
    ])
    expect(result.code).toBe(5)
    expect(errorEvent(result.events)).toMatchObject({
      error: "DaemonNotReady",
      socket: `${dir}/none.sock`,
      deadlineMs: 300,
      lastFailures: [{ _tag: "ProbeNotYet", probe: "socket" }]
    })
  })

  it("wait --pid on a daemon that dies before it is ready exits 4 (DaemonCrashed, its pid)", async () => {
    const dir = newDir()
    const daemon = sleeper()
    const waiting = start([
      "wait",
      "--socket",
      `${dir}/none.sock`,
      "--pid",
      String(daemon.pid),
      "--deadline=60s",
      "--json"
    ])
    // Waiting for sure: it has probed once.
    await waiting.waitFor((event) => event.event === "probe")
    daemon.kill("SIGKILL")
    expect((await waiting.closed).code).toBe(4)
    expect(errorEvent(waiting.events)).toMatchObject({
      error: "DaemonCrashed",
      pid: daemon.pid,
      // Not our child: its code cannot be known.
      exitCode: 255
    })
  })

  it("a failure nobody foresaw (a defect) exits 70 with an InternalError event", async () => {
    const dir = newDir()
    const daemon = sleeper()
    const result = await run(
      ["wait", "--socket", `${dir}/none.sock`, "--pid", String(daemon.pid), "--json"],
      { nodeArgs: ["--import", BREAK_PROC_READS] }
    )
    expect(result.code).toBe(70)
    expect(errorEvent(result.events)).toMatchObject({
      error: "InternalError",
      message: expect.stringContaining("no reading /proc/")
    })
  })
})

describe.skipIf(!real)("sandbox-docker against a real dockerd", () => {
  it("up: ready event with its fields; SIGTERM stops the daemon and exits 0", async () => {
    const dir = newDir()
    const up = start(["up", ...isolatedArgs(dir), "--json"])
    const ready = await up.waitFor((e) => e.event === "ready")
    expect(ready).toMatchObject({ socket: `${dir}/docker.sock`, restarts: 0 })
    expect(ready.pid).toEqual(expect.any(Number))
    expect(ready.elapsedMs).toEqual(expect.any(Number))
    expect(ready.attempts).toEqual(expect.any(Number))
    expect(ready.serverVersion).toMatch(/^\d+\.\d+/)

    // wait, on the daemon that up started, exits 0.
    const waiter = await run(["wait", "--socket", `${dir}/docker.sock`, "--pid", String(ready.pid)])
    expect(waiter.code).toBe(0)
    expect(waiter.stdout).toContain("ready:")

    up.child.kill("SIGTERM")
    expect(await up.closed).toEqual({ code: 0, signal: null })
    expect(up.events.find((e) => e.event === "stopped")).toMatchObject({ pid: ready.pid })
    expect(up.events.some((e) => e.event === "error")).toBe(false)
    expect(existsSync(`${dir}/docker.pid`)).toBe(false)
    expect(existsSync(`${dir}/docker.sock`)).toBe(false)
  })

  it("up: an unknown flag exits 4 with the log tail and a diagnosis", async () => {
    const dir = newDir()
    const result = await run(["up", ...isolatedArgs(dir), "--arg=--no-such-flag", "--json"])
    expect(result.code).toBe(4)
    const error = errorEvent(result.events)
    expect(error).toMatchObject({
      error: "DaemonCrashed",
      exitCode: 1,
      diagnosis: { cause: "unknown-flag", line: expect.stringContaining("--no-such-flag") }
    })
    expect((error.logTail as Array<string>).join("\n")).toContain("--no-such-flag")
  })

  it("up: the daemon killed after ready, no restart asked for: exits 6, DaemonDied with restarts 0", async () => {
    const dir = newDir()
    const up = start(["up", ...isolatedArgs(dir), "--json"])
    const ready = await up.waitFor((e) => e.event === "ready")
    process.kill(ready.pid as number, "SIGKILL")
    expect((await up.closed).code).toBe(6)
    expect(errorEvent(up.events)).toMatchObject({
      error: "DaemonDied",
      pid: ready.pid,
      signal: "SIGKILL",
      restarts: 0
    })
    expect(up.events.some((e) => e.event === "restarting")).toBe(false)
  })

  it("up --restart on-failure --max-restarts 2, dockerd killed each time it is ready: restarted twice on fresh pids once the old containerd is gone, then exit 6 with restarts 2", async () => {
    const dir = newDir()
    const up = start([
      "up",
      ...isolatedArgs(dir),
      "--restart",
      "on-failure",
      "--max-restarts=2",
      "--json"
    ])
    const pids: Array<number> = []
    for (let restarts = 0; restarts <= 2; restarts++) {
      const ready = await up.waitFor((e) => e.event === "ready" && e.restarts === restarts)
      pids.push(ready.pid as number)
      const containerd = await Effect.runPromise(
        readPidfile(`${dir}/exec/containerd/containerd.pid`)
      )
      expect(containerd).toEqual(expect.any(Number))
      process.kill(ready.pid as number, "SIGKILL")
      if (restarts === 2) break
      // The next dockerd is spawned only once the old one's containerd is gone.
      await up.waitFor((e) => e.event === "spawned" && !pids.includes(e.pid as number))
      expect(existsSync(`/proc/${containerd}`)).toBe(false)
    }
    expect((await up.closed).code).toBe(6)
    expect(new Set(pids).size).toBe(3)
    expect(
      up.events.filter((e) => e.event === "restarting").map((e) => [e.restart, e.maxRestarts])
    ).toEqual([
      [1, 2],
      [2, 2]
    ])
    expect(errorEvent(up.events)).toMatchObject({
      error: "DaemonDied",
      pid: pids[2],
      signal: "SIGKILL",
      restarts: 2
    })
  }, 120_000)
})
