/**
 * The fault matrix (docs/failure-modes.md), the rows about the CLI: the built
 * `sandbox-docker` run as a user runs it against a real dockerd, its exit
 * code and JSON events, and nothing left after it (processes, mounts,
 * pidfile, socket). Rows the CLI shares with the library are shown in
 * test/faults.real.test.ts; test/cli.test.ts has the unknown flag (4), the
 * missing binary (3), bad input (2), a death after ready (6), restart.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdirSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { promisify } from "node:util"
import * as Effect from "effect/Effect"
import { afterEach, describe, expect, it } from "vitest"
import { mountEntriesUnder, readPidfile } from "../src/internal/processTree.js"
import { errorEvent, start } from "./support/cli.js"
import { hasDockerd, leftovers, removeDir, tempDir } from "./support/isolated.js"

const run = promisify(execFile)
const ANNOUNCE_SIGTERM_CATCH = "./test/fixtures/announce-sigterm-catch.mjs"
const real = hasDockerd()
const root = process.getuid?.() === 0
const dirs: Array<string> = []
const mounts: Array<string> = []

const mountsUnder = async (dir: string) =>
  (await Effect.runPromise(mountEntriesUnder(dir))).map((entry) => entry.point)

afterEach(async () => {
  // Mounts this file made, whatever happened (deepest first).
  for (const point of mounts.splice(0).reverse()) {
    for (const entry of await mountsUnder(point)) {
      await run("umount", ["--lazy", entry]).catch(() => undefined)
    }
  }
  for (const dir of dirs.splice(0)) {
    expect(await leftovers(dir)).toEqual([])
    expect(await mountsUnder(dir)).toEqual([])
    removeDir(dir)
  }
})

const newDir = () => {
  const dir = tempDir()
  dirs.push(dir)
  return dir
}

const mountTmpfs = async (path: string, options: string) => {
  mkdirSync(path, { recursive: true })
  await run("mount", ["-t", "tmpfs", "-o", options, "tmpfs", path])
  mounts.push(path)
}

const isolatedArgs = (dir: string) => [
  `--socket=${dir}/docker.sock`,
  `--data-root=${dir}/data`,
  `--exec-root=${dir}/exec`,
  `--pidfile=${dir}/docker.pid`,
  "--network=private",
  "--json"
]

/** Nothing of the daemon is left: no pidfile, no socket (processes and mounts: afterEach). */
const nothingLeft = (dir: string) => {
  expect(existsSync(`${dir}/docker.pid`)).toBe(false)
  expect(existsSync(`${dir}/docker.sock`)).toBe(false)
}

describe.skipIf(!real || !root)("sandbox-docker up: faults of the fault matrix", () => {
  it.each([
    ["SIGTERM", "spawned"],
    ["SIGINT", "spawned"],
    ["SIGTERM", "probe"],
    ["SIGINT", "probe"]
  ] as const)(
    "%s to the CLI mid-start (at the first %s event): the daemon is stopped, nothing is left, exit 0",
    async (signal, at) => {
      const dir = newDir()
      const up = start(["up", ...isolatedArgs(dir)])
      const event = await up.waitFor((e) => e.event === at)
      expect(up.events.some((e) => e.event === "ready")).toBe(false)
      up.child.kill(signal)
      expect(await up.closed).toEqual({ code: 0, signal: null })
      expect(up.events.map((e) => e.event)).toContain("stopped")
      expect(up.events.some((e) => e.event === "error")).toBe(false)
      if (at === "spawned")
        expect(up.events.find((e) => e.event === "stopped")?.pid).toBe(event.pid)
      nothingLeft(dir)
    }
  )

  it("SIGTERM while the CLI is still loading, before it started anything: exit 0", async () => {
    const dir = newDir()
    // The executable's first lines catch SIGTERM; loading the CLI takes far
    // longer. Signalled the moment the catch is in place, which a preload
    // announces (a fixed delay raced Node's own start on a slow machine).
    const up = start(["up", ...isolatedArgs(dir)], {
      nodeArgs: ["--import", ANNOUNCE_SIGTERM_CATCH]
    })
    await up.waitForStderr("catching SIGTERM")
    expect(up.events).toEqual([])
    up.child.kill("SIGTERM")
    expect(await up.closed).toEqual({ code: 0, signal: null })
    nothingLeft(dir)
  })

  it("the daemon SIGKILLed while the CLI stops it: the stop finishes, exit 0", async () => {
    const dir = newDir()
    const up = start(["up", ...isolatedArgs(dir)])
    const ready = await up.waitFor((e) => e.event === "ready")
    up.child.kill("SIGTERM")
    await up.waitFor((e) => e.event === "stopping")
    process.kill(ready.pid as number, "SIGKILL")
    expect(await up.closed).toEqual({ code: 0, signal: null })
    const stopped = await up.waitFor((e) => e.event === "stopped")
    expect(stopped).toMatchObject({
      pid: ready.pid,
      status: { _tag: "Signaled", signal: "SIGKILL" }
    })
    nothingLeft(dir)
  })

  it("a full data-root: exit 4, DaemonCrashed with the disk-full diagnosis", async () => {
    const dir = newDir()
    await mountTmpfs(`${dir}/data`, "size=1m")
    await run("dd", ["if=/dev/zero", `of=${dir}/data/fill`, "bs=4k"]).catch(() => undefined)
    const up = start(["up", ...isolatedArgs(dir)])
    expect((await up.closed).code).toBe(4)
    const error = await up.waitFor((e) => e.event === "error")
    expect(error).toMatchObject({
      error: "DaemonCrashed",
      exitCode: 1,
      diagnosis: { cause: "disk-full" }
    })
  })

  it("a read-only data-root: exit 2, DirectoryNotWritable, nothing spawned", async () => {
    const dir = newDir()
    await mountTmpfs(`${dir}/data`, "ro")
    const up = start(["up", ...isolatedArgs(dir)])
    expect((await up.closed).code).toBe(2)
    expect(await up.waitFor((e) => e.event === "error")).toMatchObject({
      error: "DirectoryNotWritable",
      field: "data-root",
      reason: "EROFS"
    })
    expect(up.events.some((e) => e.event === "spawned")).toBe(false)
  })

  it("a socket something listens on: exit 2, SocketInUse", async () => {
    const dir = newDir()
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(`${dir}/docker.sock`, resolve))
    try {
      const up = start(["up", ...isolatedArgs(dir)])
      expect((await up.closed).code).toBe(2)
      expect(await up.waitFor((e) => e.event === "error")).toMatchObject({ error: "SocketInUse" })
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it("a broken daemon.json: exit 4, DaemonCrashed with the bad-config diagnosis", async () => {
    const dir = newDir()
    writeFileSync(`${dir}/daemon.json`, '{ "debug": tru')
    const up = start(["up", ...isolatedArgs(dir), `--arg=--config-file=${dir}/daemon.json`])
    expect((await up.closed).code).toBe(4)
    expect(await up.waitFor((e) => e.event === "error")).toMatchObject({
      error: "DaemonCrashed",
      diagnosis: { cause: "bad-config" }
    })
  })

  it("containerd SIGSTOPped after ready: liveness fails 3 times, exit 6 (DaemonUnhealthy); the stop is cut by --stop-grace: SIGKILL after 2 s", async () => {
    const dir = newDir()
    const up = start(["up", ...isolatedArgs(dir), "--stop-grace=2s"])
    const ready = await up.waitFor((e) => e.event === "ready")
    const containerd = await Effect.runPromise(readPidfile(`${dir}/exec/containerd/containerd.pid`))
    expect(containerd).toEqual(expect.any(Number))
    process.kill(containerd!, "SIGSTOP")
    expect((await up.closed).code).toBe(6)
    expect(errorEvent(up.events)).toMatchObject({
      error: "DaemonUnhealthy",
      consecutiveFailures: 3,
      lastFailure: { _tag: "ProbeTimedOut", probe: "containerd" }
    })
    expect(up.events.filter((e) => e.event === "liveness-failed")).toHaveLength(3)
    // dockerd waits for its containerd (10 s) when told to stop: the grace
    // ran out first and SIGKILL ended it.
    const stopped = up.events.find((e) => e.event === "stopped")
    expect(stopped).toMatchObject({
      pid: ready.pid,
      status: { _tag: "Signaled", signal: "SIGKILL" }
    })
    expect(stopped?.elapsedMs).toBeGreaterThanOrEqual(2_000)
    expect(existsSync(`/proc/${containerd}`)).toBe(false)
    nothingLeft(dir)
  }, 90_000)
})
