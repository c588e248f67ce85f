/**
 * Nothing orphaned (issue 18): what a SIGKILLed supervisor leaves, and the
 * way back. Real processes, a real isolated dockerd, the built CLI: the
 * processes started by the local ProcessManager die with it; a SIGKILLed
 * `sandbox-docker up` takes dockerd and its containerd with it and the
 * data-root survives into the next `up`; a dockerd left running is
 * refused (exit 2, naming `--replace`), replaced by `up --replace` and
 * stopped by `down`; a pidfile holding another process is never touched;
 * with live-restore, a crash, the restart and the stop leave the running
 * containers alone.
 */
import { execFile, spawn } from "node:child_process"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { request } from "node:http"
import { createInterface } from "node:readline"
import { promisify } from "node:util"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { afterEach, describe, expect, it } from "vitest"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerdConfig from "../src/DockerdConfig.js"
import { isAlive } from "../src/Preflight.js"
import {
  leftoverMounts,
  leftoversOf,
  mountEntriesUnder,
  pidsMentioning
} from "../src/internal/processTree.js"
import * as Supervisor from "../src/Supervisor.js"
import { run, start } from "./support/cli.js"
import { hasDockerd, removeDir, tempDir } from "./support/isolated.js"
import { BUILD_IMAGES, BUSYBOX_IMAGE } from "./support/testDaemon.js"

const exec = promisify(execFile)
const real = hasDockerd()
const root = process.getuid?.() === 0
const dirs: Array<string> = []

/**
 * Whatever a test left, removed whatever happened: processes naming its
 * dir and those below them (a live-restore container's), then mounts.
 */
const sweep = async (dir: string) => {
  for (const pid of (await Effect.runPromise(leftoversOf(dir, []))).all) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone
    }
  }
  await until(async () => (await Effect.runPromise(pidsMentioning(dir))).length === 0)
  for (const entry of await mountsUnder(dir)) {
    await exec("umount", ["--lazy", entry]).catch(() => undefined)
  }
  removeDir(dir)
}

afterEach(async () => {
  for (const dir of dirs.splice(0)) await sweep(dir)
})

const newDir = () => {
  const dir = tempDir("sdo-")
  writeFileSync(`${dir}/daemon.json`, "{}")
  dirs.push(dir)
  return dir
}

const mountsUnder = async (dir: string) =>
  (await Effect.runPromise(mountEntriesUnder(dir))).map((entry) => entry.point)

/** Polls `check` every 50 ms until it holds (the test's timeout bounds it). */
const until = async (check: () => boolean | Promise<boolean>): Promise<void> => {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 50))
}

/** Whether `/proc/PID` is gone or a zombie (dead, not yet reaped by init). */
const dead = (pid: number) => Effect.runPromise(isAlive(pid)).then((alive) => !alive)

/** The flags that isolate a daemon in `dir` (with its own daemon.json and no bridge). */
const dockerdFlags = (dir: string) => [
  `--host=unix://${dir}/docker.sock`,
  `--data-root=${dir}/data`,
  `--exec-root=${dir}/exec`,
  `--pidfile=${dir}/docker.pid`,
  `--config-file=${dir}/daemon.json`,
  "--bridge=none",
  "--iptables=false",
  "--ip6tables=false",
  "--ip-forward=false"
]

/** `up`'s options for the same daemon. */
const upArgs = (dir: string) => [
  `--socket=${dir}/docker.sock`,
  `--data-root=${dir}/data`,
  `--exec-root=${dir}/exec`,
  `--pidfile=${dir}/docker.pid`,
  "--network=private",
  `--arg=--config-file=${dir}/daemon.json`,
  "--arg=--bridge=none",
  "--arg=--ip6tables=false",
  "--arg=--ip-forward=false",
  "--json"
]

/** The built CLI, its JSON events as they come; `waitFor` takes an event's name. */
const cli = (args: ReadonlyArray<string>) => {
  const running = start(args)
  return {
    ...running,
    waitFor: (name: string) => running.waitFor((event) => event.event === name)
  }
}

/** GET on the Engine at `socket`: the status code, or 0 when nothing answers. */
const engineGet = (socket: string, path: string) =>
  new Promise<number>((resolve) => {
    const req = request({ socketPath: socket, path, method: "GET" }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on("error", () => resolve(0))
    req.end()
  })

/**
 * A dockerd started the way a killed supervisor leaves one: in a session of
 * its own, re-parented to init, nobody to stop it. Its pid, once it answers.
 */
const leftRunning = async (dir: string): Promise<number> => {
  const child = spawn("setsid", ["unshare", "--net", "--", "dockerd", ...dockerdFlags(dir)], {
    detached: true,
    stdio: "ignore"
  })
  child.unref()
  await until(async () => (await engineGet(`${dir}/docker.sock`, "/_ping")) === 200)
  return Number(readFileSync(`${dir}/docker.pid`, "utf8"))
}

/** `scripts/build-images.sh busybox` into the daemon at `socket`. */
const importBusybox = (socket: string) =>
  exec("bash", [BUILD_IMAGES, "busybox"], {
    env: { ...process.env, DOCKER_HOST: `unix://${socket}` }
  })

describe("the local ProcessManager", () => {
  it.each([
    [true, "is killed"],
    [false, "outlives it"]
  ] as const)(
    "diesWithParent: %s: a process it started %s when the process that started it is SIGKILLed",
    async (diesWithParent, _) => {
      const parent = spawn(
        process.execPath,
        ["--import", "tsx", "test/fixtures/dies-with-parent.ts", String(diesWithParent)],
        { stdio: ["ignore", "pipe", "inherit"] }
      )
      const line = await new Promise<string>((resolve) =>
        createInterface({ input: parent.stdout! }).once("line", resolve)
      )
      const sleep = Number(line)
      expect(await Effect.runPromise(isAlive(sleep))).toBe(true)
      parent.kill("SIGKILL")
      try {
        if (diesWithParent) {
          await until(() => dead(sleep))
        } else {
          // Its parent is gone (re-parented), and it still runs.
          await until(() => !existsSync(`/proc/${parent.pid}`) || dead(parent.pid!))
          expect(await Effect.runPromise(isAlive(sleep))).toBe(true)
        }
      } finally {
        try {
          process.kill(sleep, "SIGKILL")
        } catch {
          // gone
        }
      }
    }
  )

  it("on Linux without setpriv, an exec that must die with its parent fails with SpawnFailed naming util-linux", async () => {
    const parent = spawn(
      process.execPath,
      ["--import", "tsx", "test/fixtures/dies-with-parent.ts", "true"],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, PATH: "/nonexistent" } }
    )
    const line = await new Promise<string>((resolve) =>
      createInterface({ input: parent.stdout! }).once("line", resolve)
    )
    const error = JSON.parse(line) as { _tag: string; message: string }
    expect(error._tag).toBe("SpawnFailed")
    expect(error.message).toMatch(/setpriv is not installed.*apt-get install util-linux/)
  })
})

describe.skipIf(!real || !root)("nothing orphaned: a real dockerd", () => {
  it("SIGKILL of `sandbox-docker up` takes dockerd and containerd with it; the next `up` cleans the leftover mount and starts on the same data-root, the image loaded before there", async () => {
    const dir = newDir()
    const first = cli(["up", ...upArgs(dir)])
    const ready = await first.waitFor("ready")
    const dockerd = ready.pid as number
    const containerd = Number(readFileSync(`${dir}/exec/containerd/containerd.pid`, "utf8"))
    await importBusybox(`${dir}/docker.sock`)

    first.child.kill("SIGKILL")
    expect(await first.closed).toEqual({ code: null, signal: "SIGKILL" })
    await until(() => dead(dockerd))
    await until(() => dead(containerd))
    expect(await Effect.runPromise(pidsMentioning(dir))).toEqual([])
    // What the killed run could not undo: dockerd's bind of the data-root
    // onto itself, and the pidfile.
    expect(
      (await Effect.runPromise(leftoverMounts(`${dir}/data`, `${dir}/exec`))).map((m) => m.point)
    ).toEqual([`${dir}/data`])
    expect(existsSync(`${dir}/docker.pid`)).toBe(true)

    const second = cli(["up", ...upArgs(dir)])
    await second.waitFor("ready")
    expect(
      await engineGet(`${dir}/docker.sock`, `/images/${encodeURIComponent(BUSYBOX_IMAGE)}/json`)
    ).toBe(200)
    second.child.kill("SIGTERM")
    expect(await second.closed).toEqual({ code: 0, signal: null })
    expect(await Effect.runPromise(pidsMentioning(dir))).toEqual([])
    expect(await mountsUnder(dir)).toEqual([])
    expect(existsSync(`${dir}/docker.pid`)).toBe(false)
  })

  it("a container running when `up` is SIGKILLed: its shim and processes live on, and the next `up` kills them and undoes their mounts before it starts", async () => {
    const dir = newDir()
    const socket = `${dir}/docker.sock`
    const first = cli(["up", ...upArgs(dir)])
    const ready = await first.waitFor("ready")
    await importBusybox(socket)
    const created = await engine(socket, "POST", "/containers/create", {
      Image: BUSYBOX_IMAGE,
      Cmd: ["sleep", "3600"],
      HostConfig: { NetworkMode: "none" }
    })
    await engine(socket, "POST", `/containers/${created.json.Id}/start`)
    const inspected = await engine(socket, "GET", `/containers/${created.json.Id}/json`)
    const container = inspected.json.State.Pid as number

    first.child.kill("SIGKILL")
    await until(() => dead(ready.pid as number))
    const left = await Effect.runPromise(leftoversOf(`${dir}/exec`, []))
    expect(left.all).toContain(container)
    expect(left.daemonSide.length).toBeGreaterThan(0)
    const mounts = await Effect.runPromise(leftoverMounts(`${dir}/data`, `${dir}/exec`))
    expect(mounts.some((m) => m.point.startsWith(`${dir}/data/overlay2/`))).toBe(true)

    const second = cli(["up", ...upArgs(dir)])
    await second.waitFor("ready")
    expect(await dead(container)).toBe(true)
    for (const pid of left.all) expect(await dead(pid)).toBe(true)
    second.child.kill("SIGTERM")
    expect(await second.closed).toEqual({ code: 0, signal: null })
    expect(await Effect.runPromise(pidsMentioning(dir))).toEqual([])
    expect(await mountsUnder(dir)).toEqual([])
  })

  it("a dockerd left running: `up` exits 2 with DaemonAlreadyRunning naming --replace and leaves it alone; `up --replace` stops it and starts", async () => {
    const dir = newDir()
    const orphan = await leftRunning(dir)

    const refused = await run(["up", ...upArgs(dir)])
    expect(refused.code).toBe(2)
    const error = refused.events.find((e) => e.event === "error")
    expect(error).toMatchObject({
      error: "DaemonAlreadyRunning",
      pid: orphan,
      pidfile: `${dir}/docker.pid`,
      socket: `${dir}/docker.sock`,
      foundBy: "pidfile"
    })
    expect(error?.message).toMatch(/--replace/)
    expect(error?.message).toMatch(/sandbox-docker down --pidfile/)
    expect(await Effect.runPromise(isAlive(orphan))).toBe(true)

    const replacing = cli(["up", "--replace", ...upArgs(dir)])
    expect(await replacing.waitFor("replacing")).toMatchObject({ pid: orphan, foundBy: "pidfile" })
    const ready = await replacing.waitFor("ready")
    expect(ready.pid).not.toBe(orphan)
    expect(await dead(orphan)).toBe(true)
    expect(await engineGet(`${dir}/docker.sock`, "/_ping")).toBe(200)
    replacing.child.kill("SIGTERM")
    expect(await replacing.closed).toEqual({ code: 0, signal: null })
    expect(await Effect.runPromise(pidsMentioning(dir))).toEqual([])
    expect(await mountsUnder(dir)).toEqual([])
  })

  it.each([
    ["--pidfile", "pidfile"],
    ["--socket", "socket"]
  ] as const)(
    "`down %s` stops a dockerd left running (exit 0, stopping and stopped events) and leaves nothing",
    async (option, foundBy) => {
      const dir = newDir()
      const orphan = await leftRunning(dir)
      const path = option === "--pidfile" ? `${dir}/docker.pid` : `${dir}/docker.sock`
      const down = await run([
        "down",
        `${option}=${path}`,
        `--data-root=${dir}/data`,
        `--exec-root=${dir}/exec`,
        "--json"
      ])
      expect(down.code).toBe(0)
      expect(down.events.map((e) => e.event)).toEqual(["stopping", "stopped"])
      expect(down.events[0]).toMatchObject({ pid: orphan, foundBy })
      expect(down.events[1]).toMatchObject({ pid: orphan, killed: false, survived: false })
      expect(await dead(orphan)).toBe(true)
      expect(await Effect.runPromise(pidsMentioning(dir))).toEqual([])
      expect(await mountsUnder(dir)).toEqual([])
      expect(existsSync(`${dir}/docker.pid`)).toBe(false)
      expect(existsSync(`${dir}/docker.sock`)).toBe(false)

      // Again: nothing runs, nothing to do.
      const again = await run(["down", `${option}=${path}`, "--json"])
      expect(again.code).toBe(0)
      expect(again.events.map((e) => e.event)).toEqual(["not-running"])
    }
  )

  it("a pidfile holding another process is never touched: `up --replace` and `down` exit 2 with PidfileInUse, the process and the file as they were", async () => {
    const dir = newDir()
    const other = spawn("sleep", ["3600"], { stdio: "ignore" })
    try {
      writeFileSync(`${dir}/docker.pid`, String(other.pid))
      const up = await run(["up", "--replace", ...upArgs(dir)])
      expect(up.code).toBe(2)
      expect(up.events.find((e) => e.event === "error")).toMatchObject({
        error: "PidfileInUse",
        pid: other.pid
      })
      const down = await run(["down", `--pidfile=${dir}/docker.pid`, "--json"])
      expect(down.code).toBe(2)
      expect(down.events.find((e) => e.event === "error")).toMatchObject({
        error: "PidfileInUse",
        pid: other.pid
      })
      expect(await Effect.runPromise(isAlive(other.pid!))).toBe(true)
      expect(readFileSync(`${dir}/docker.pid`, "utf8")).toBe(String(other.pid))
    } finally {
      other.kill("SIGKILL")
    }
  })

  it("`down` without --socket or --pidfile exits 2 naming them, and looks for nothing", async () => {
    const down = await run(["down", "--json"])
    expect(down.code).toBe(2)
    expect(down.events.find((e) => e.event === "error")).toMatchObject({
      error: "InvalidArguments",
      option: "socket"
    })
  })
})

/** A request to the Engine at `socket`: the status code and the JSON answer, if any. */
const engine = (socket: string, method: string, path: string, body?: unknown) =>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the Engine's answers, read by the test
  new Promise<{ status: number; json: any }>((resolve, reject) => {
    const req = request(
      { socketPath: socket, path, method, headers: { "Content-Type": "application/json" } },
      (res) => {
        let text = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => (text += chunk))
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, json: text === "" ? undefined : JSON.parse(text) })
        )
      }
    )
    req.on("error", reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })

describe.skipIf(!real || !root)("--live-restore on a real dockerd", () => {
  it("a crash, the restart by Supervisor.run and the stop leave a running container alone", async () => {
    const dir = newDir()
    const socket = `${dir}/docker.sock`
    const config = await Effect.runPromise(
      DockerdConfig.decode({
        socket,
        dataRoot: `${dir}/data`,
        execRoot: `${dir}/exec`,
        pidfile: `${dir}/docker.pid`,
        network: "private",
        extraArgs: [
          `--config-file=${dir}/daemon.json`,
          "--bridge=none",
          "--ip6tables=false",
          "--ip-forward=false",
          "--live-restore"
        ]
      })
    )
    const container = await Effect.runPromise(
      Effect.gen(function* () {
        const state = yield* SubscriptionRef.make<Supervisor.DaemonState>(
          Supervisor.DaemonState.Starting({ restarts: 0 })
        )
        const readyAfter = (restarts: number) =>
          state.changes.pipe(
            Stream.filter(
              (s): s is Extract<Supervisor.DaemonState, { _tag: "Ready" }> =>
                s._tag === "Ready" && s.restarts === restarts
            ),
            Stream.runHead,
            Effect.flatten,
            Effect.orDie
          )
        const supervisor = yield* Effect.fork(
          Supervisor.run(config, { restart: Supervisor.onFailure(1, "10 millis"), state })
        )
        const first = yield* readyAfter(0)
        yield* Effect.promise(() => importBusybox(socket))
        const created = yield* Effect.promise(() =>
          engine(socket, "POST", "/containers/create", {
            Image: BUSYBOX_IMAGE,
            Cmd: ["sleep", "3600"],
            HostConfig: { NetworkMode: "none" }
          })
        )
        const id = created.json.Id as string
        yield* Effect.promise(() => engine(socket, "POST", `/containers/${id}/start`))
        const before = yield* Effect.promise(() => engine(socket, "GET", `/containers/${id}/json`))
        const pid = before.json.State.Pid as number
        expect(yield* isAlive(pid)).toBe(true)

        // A crash: dockerd SIGKILLed. Supervisor.run stops what is left and starts it again.
        process.kill(first.daemon.pid, "SIGKILL")
        const second = yield* readyAfter(1)
        expect(second.daemon.pid).not.toBe(first.daemon.pid)
        const after = yield* Effect.promise(() => engine(socket, "GET", `/containers/${id}/json`))
        expect(after.json.State).toMatchObject({ Running: true, Pid: pid })
        expect(yield* isAlive(pid)).toBe(true)

        // The stop: dockerd and its containerd go, the container stays.
        yield* Fiber.interrupt(supervisor)
        expect(yield* isAlive(second.daemon.pid)).toBe(false)
        return pid
      }).pipe(Effect.provide(Dockerd.layerNode))
    )
    expect(await Effect.runPromise(isAlive(container))).toBe(true)
  })
})
