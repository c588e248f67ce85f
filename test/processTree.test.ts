/**
 * What the stop of a local daemon takes for its leftovers, found through
 * /proc with real processes: the processes naming its exec-root and what
 * runs below them, never the process doing the stop or its ancestors.
 */
import { execFile, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { findDaemon, leftoversOf, mentionsPath } from "../src/internal/processTree.js"

const run = promisify(execFile)
const processTree = fileURLToPath(new URL("../src/internal/processTree.ts", import.meta.url))

describe("a daemon's leftovers", () => {
  it("a path is mentioned by itself and what is below it, not by a longer name", () => {
    expect(mentionsPath("--exec-root=/run/d1", "/run/d1")).toBe(true)
    expect(mentionsPath("/run/d1/containerd/containerd.sock", "/run/d1")).toBe(true)
    expect(mentionsPath("/run/d1/", "/run/d1/")).toBe(true)
    expect(mentionsPath("--exec-root=/run/d10", "/run/d1")).toBe(false)
  })

  it.live("the processes below one, children's children included", () =>
    Effect.gen(function* () {
      const root = "/tmp/sdt-tree-root"
      // A shell naming the path, with a child that has a child of its own.
      const shell = spawn("sh", ["-c", 'sh -c "sleep 30 & wait" & wait', "sh", root], {
        stdio: "ignore",
        detached: true
      })
      try {
        let found: ReadonlyArray<number> = []
        for (let turn = 0; turn < 100 && found.length < 3; turn++) {
          yield* Effect.sleep("20 millis")
          found = (yield* leftoversOf(root, [])).all
        }
        // The outer shell, the inner shell, and sleep (under the inner one).
        expect(found).toContain(shell.pid)
        const { stdout } = yield* Effect.promise(() =>
          run("ps", ["-o", "pid=,comm=", "-p", found.join(",")])
        )
        expect(stdout).toMatch(/sleep/)
        expect(found.length).toBeGreaterThanOrEqual(3)
      } finally {
        process.kill(-shell.pid!, "SIGKILL")
      }
    })
  )

  it.live(
    "never the process looking, nor its ancestors, whose command lines name the path too (npx sandbox-docker up --exec-root=…)",
    () =>
      Effect.gen(function* () {
        const root = "/tmp/sdt-tree-ours"
        // A parent shell naming the path, and under it a node process that
        // names it too and looks: neither is a leftover.
        const code = `
          const tree = await import(${JSON.stringify(processTree)})
          const { Effect } = await import("effect")
          const mentioning = await Effect.runPromise(tree.pidsMentioning(process.argv[1]))
          const left = await Effect.runPromise(tree.leftoversOf(process.argv[1], [process.ppid, process.pid]))
          console.log(JSON.stringify({ mentioning, left }))
        `
        const { stdout } = yield* Effect.promise(() =>
          run("sh", [
            "-c",
            '"$0" --import tsx --input-type=module -e "$1" "$2"; true',
            process.execPath,
            code,
            root
          ])
        )
        expect(JSON.parse(stdout)).toEqual({ mentioning: [], left: { daemonSide: [], all: [] } })
      }),
    30_000
  )
})

describe("finding a dockerd already running for these paths", () => {
  // A process named `dockerd` (prctl PR_SET_NAME) whose command line names
  // the data-root, in this mount namespace or in a new one (as a sandbox's
  // inner dockerd is).
  const standIn = (dataRoot: string, ownMounts: boolean) => {
    const python = [
      "python3",
      "-c",
      "import ctypes, time; ctypes.CDLL(None).prctl(15, b'dockerd', 0, 0, 0); print('named', flush=True); time.sleep(60)",
      `--data-root=${dataRoot}`
    ]
    const child = spawn(
      ownMounts ? "unshare" : python[0]!,
      ownMounts ? ["--mount", ...python] : python.slice(1),
      {
        stdio: ["ignore", "pipe", "ignore"]
      }
    )
    const named = new Promise<void>((resolve) => child.stdout.once("data", () => resolve()))
    return { child, named }
  }

  it.live(
    "a dockerd in this mount namespace naming the data-root is found; one in another mount namespace is not",
    () =>
      Effect.gen(function* () {
        const dataRoot = "/tmp/sdt-find-daemon-data"
        const here = standIn(dataRoot, false)
        const elsewhere = standIn(`${dataRoot}-elsewhere`, true)
        try {
          yield* Effect.promise(() => Promise.all([here.named, elsewhere.named]))
          expect(
            yield* findDaemon({
              pidfile: undefined,
              socket: undefined,
              execRoot: undefined,
              dataRoot
            })
          ).toEqual({
            _tag: "Dockerd",
            pid: here.child.pid,
            foundBy: "data-root"
          })
          // Same paths, another mount namespace: not the daemon these paths name.
          expect(
            yield* findDaemon({
              pidfile: undefined,
              socket: undefined,
              execRoot: undefined,
              dataRoot: `${dataRoot}-elsewhere`
            })
          ).toEqual({ _tag: "None" })
        } finally {
          here.child.kill("SIGKILL")
          elsewhere.child.kill("SIGKILL")
        }
      })
  )
})
