/**
 * Safe defaults:
 * - a TCP listener without TLS is refused unless explicitly allowed, and no
 *   extra flag can open one behind the configuration's back;
 * - the socket gets the mode and group asked for (default 0660), checked on
 *   a real daemon with `stat`;
 * - secrets (environment values marked secret) reach the process and
 *   nothing else: not argv, logs, events or errors;
 * - no value is ever interpolated into a shell.
 */
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:net"
import * as Path from "node:path"
import { SystemError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as List from "effect/List"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import fc from "fast-check"
import { parse } from "../src/cli/main.js"
import type { DaemonEvent } from "../src/DaemonEvent.js"
import * as Containerd from "../src/Containerd.js"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import * as DockerHost from "../src/DockerHost.js"
import * as DockerdConfig from "../src/DockerdConfig.js"
import * as Probe from "../src/Probe.js"
import { ProcessManager } from "../src/ProcessManager.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import { REDACTED, redactArgv, redactText } from "../src/Redaction.js"
import * as TestDocker from "../src/TestDocker.js"
import * as TestProcessManager from "../src/TestProcessManager.js"
import { hasDockerd, isolatedConfig, leftovers, removeDir, tempDir } from "./support/isolated.js"

const real = hasDockerd()

const decode = (input: unknown) => Effect.runPromiseExit(DockerdConfig.decode(input))

const refusal = async (input: unknown) => {
  const exit = await decode(input)
  if (Exit.isSuccess(exit)) throw new Error(`accepted: ${JSON.stringify(input)}`)
  return Option.getOrThrow(Cause.failureOption(exit.cause))
}

const argvOf = async (input: unknown) => {
  const exit = await decode(input)
  if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
  return DockerdConfig.argv(exit.value)
}

const planOf = (argv: ReadonlyArray<string>) => Effect.runPromiseExit(parse(argv))

/** A stand-in dockerd: a node script, made executable. */
const fakeDockerd = (dir: string, body: string) => {
  const file = Path.join(dir, "dockerd")
  writeFileSync(file, `#!${process.execPath}\n${body}\n`)
  chmodSync(file, 0o755)
  return file
}

/**
 * `layer`'s DockerHost, but applying the socket's mode as the live host does
 * (DockerHost.make) on a file system where the socket is there, 0777, and
 * chmod is refused.
 */
const refusingChmod = <E, R>(
  layer: Layer.Layer<
    ProcessManager | DockerHost.DockerHost | TestProcessManager.TestProcessManager,
    E,
    R
  >
) =>
  Layer.effect(
    DockerHost.DockerHost,
    Effect.gen(function* () {
      const scripted = yield* DockerHost.DockerHost
      const live = yield* DockerHost.make.pipe(
        Effect.provide(
          Layer.mergeAll(
            Layer.succeed(
              FileSystem.FileSystem,
              FileSystem.makeNoop({
                stat: () =>
                  Effect.succeed({
                    type: "Socket",
                    mode: 0o140777,
                    mtime: Option.none(),
                    atime: Option.none(),
                    birthtime: Option.none(),
                    dev: 0,
                    ino: Option.none(),
                    nlink: Option.none(),
                    uid: Option.none(),
                    gid: Option.none(),
                    rdev: Option.none(),
                    size: FileSystem.Size(0),
                    blksize: Option.none(),
                    blocks: Option.none()
                  }),
                chmod: (path) =>
                  Effect.fail(
                    new SystemError({
                      reason: "PermissionDenied",
                      module: "FileSystem",
                      method: "chmod",
                      pathOrDescriptor: path
                    })
                  )
              })
            ),
            DockerEngine.layerConnectorTest(() => ({})),
            Containerd.layerConnectorTest(() => ({}))
          )
        )
      )
      return { ...scripted, applySocketMode: live.applySocketMode }
    })
  ).pipe(Layer.provideMerge(layer))

// ---------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------

describe("a TCP listener", () => {
  it("without TLS is refused, naming tcp and how to allow it", async () => {
    const error = await refusal({ tcp: { address: "0.0.0.0:2375" } })
    expect(error).toMatchObject({ _tag: "InvalidConfig", field: "tcp" })
    expect(error.message).toContain("root on this machine")
    expect(error.message).toContain("allowInsecureTcp: true")
    expect(error.message).toContain("--insecure-tcp")
    expect(error.message).toContain("--tls-ca")
  })

  it("without TLS is accepted only with allowInsecureTcp: true, and gets no TLS flags", async () => {
    const argv = await argvOf({ tcp: { address: "127.0.0.1:2375" }, allowInsecureTcp: true })
    expect(argv).toContain("--host=tcp://127.0.0.1:2375")
    expect(argv.filter((arg) => arg.startsWith("--tls"))).toEqual([])
  })

  it("with TLS gets --tlsverify and the three files", async () => {
    const argv = await argvOf({
      tcp: {
        address: "127.0.0.1:2376",
        tls: { ca: "/pki/ca.pem", cert: "/pki/server.pem", key: "/pki/server-key.pem" }
      }
    })
    expect(argv.slice(1)).toEqual([
      "--host=unix:///var/run/docker.sock",
      "--host=tcp://127.0.0.1:2376",
      "--tlsverify",
      "--tlscacert=/pki/ca.pem",
      "--tlscert=/pki/server.pem",
      "--tlskey=/pki/server-key.pem",
      "--iptables=false"
    ])
  })

  it("in a private network namespace is refused (it would be reachable from nowhere)", async () => {
    const error = await refusal({
      tcp: { address: "127.0.0.1:2375" },
      allowInsecureTcp: true,
      network: "private"
    })
    expect(error).toMatchObject({ field: "tcp" })
  })

  it.each([
    "-H=tcp://0.0.0.0:2375",
    "-Htcp://0.0.0.0:2375",
    "-DHtcp://0.0.0.0:2375",
    "--host=tcp://0.0.0.0:2375",
    "-H",
    "--tlsverify=false",
    "--tls",
    "--tlskey=/k.pem",
    "-G",
    "--group=users"
  ])(
    "no extra flag opens a listener or sets TLS or the group behind the configuration: %s",
    async (flag) => {
      const error = await refusal({ extraArgs: [flag] })
      expect(error).toMatchObject({ field: "extraArgs.0" })
      expect(error.message).toMatch(/is set by the "(socket|tcp|socketGroup)" setting/)
    }
  )

  it("the CLI: --tcp alone exits 2 naming --tcp; --insecure-tcp allows it; --tls-* give TLS", async () => {
    const refused = await planOf(["up", "--tcp", "127.0.0.1:2375"])
    expect(Exit.isFailure(refused)).toBe(true)
    if (Exit.isFailure(refused)) {
      expect(Option.getOrThrow(Cause.failureOption(refused.cause))).toMatchObject({
        _tag: "InvalidArguments",
        option: "tcp"
      })
    }
    const insecure = await planOf(["up", "--tcp=127.0.0.1:2375", "--insecure-tcp"])
    const withTls = await planOf([
      "up",
      "--tcp=127.0.0.1:2376",
      "--tls-ca=/pki/ca.pem",
      "--tls-cert=/pki/cert.pem",
      "--tls-key=/pki/key.pem"
    ])
    for (const [exit, flags] of [
      [insecure, []],
      [
        withTls,
        [
          "--tlsverify",
          "--tlscacert=/pki/ca.pem",
          "--tlscert=/pki/cert.pem",
          "--tlskey=/pki/key.pem"
        ]
      ]
    ] as const) {
      if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
      const plan = Option.getOrThrow(exit.value)
      if (plan._tag !== "Up") throw new Error("not up")
      const argv = DockerdConfig.argv(plan.config)
      expect(argv.filter((arg) => arg.startsWith("--tls"))).toEqual(flags)
    }
  })

  it("TLS files that cannot be read are refused before anything is spawned", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      try {
        const mark = `${dir}/spawned`
        const binary = fakeDockerd(
          dir,
          `require("node:fs").writeFileSync(${JSON.stringify(mark)}, "")`
        )
        const error = yield* Effect.flip(
          Effect.scoped(
            Dockerd.start(
              isolatedConfig(dir, {
                binary,
                network: "host",
                tcp: {
                  address: "127.0.0.1:2376",
                  tls: { ca: `${dir}/none/ca.pem`, cert: `${dir}/c.pem`, key: `${dir}/k.pem` }
                }
              })
            )
          ).pipe(Effect.provide(Dockerd.layerNode))
        )
        expect(error).toMatchObject({ _tag: "InvalidConfig", field: "tcp.tls.ca" })
        expect(error.message).toContain("ENOENT")
        expect(existsSync(mark)).toBe(false)
      } finally {
        removeDir(dir)
      }
    }).pipe(Effect.runPromise))
})

// ---------------------------------------------------------------------------
// The socket's mode and group
// ---------------------------------------------------------------------------

const gidOf = (group: string): number | undefined => {
  const line = readFileSync("/etc/group", "utf8")
    .split("\n")
    .find((entry) => entry.split(":")[0] === group)
  return line === undefined ? undefined : Number(line.split(":")[2])
}

describe("the socket's mode and group", () => {
  it("default 0660 (owner and group only); --group only when asked", async () => {
    const exit = await decode({})
    if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
    expect(exit.value.socketMode).toBe(0o660)
    expect(DockerdConfig.argv(exit.value).some((arg) => arg.startsWith("--group"))).toBe(false)
    expect(await argvOf({ socketGroup: "docker" })).toContain("--group=docker")
    expect(await argvOf({ socketGroup: "105" })).toContain("--group=105")
  })

  it.each([
    ["0400", "owner"],
    ["0000", "owner"],
    ["777x", "not a mode"],
    ["01777", "not a mode"],
    [432, "octal digits in a string"]
  ])("mode %j is refused: %s", async (mode, needle) => {
    const error = await refusal({ socketMode: mode })
    expect(error).toMatchObject({ field: "socketMode" })
    expect(error.message).toContain(needle)
  })

  it("the CLI: --socket-mode and --socket-group reach the configuration", async () => {
    const exit = await planOf(["up", "--socket-mode", "0600", "--socket-group=daemon"])
    if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
    const plan = Option.getOrThrow(exit.value)
    if (plan._tag !== "Up") throw new Error("not up")
    expect(plan.config.socketMode).toBe(0o600)
    expect(DockerdConfig.argv(plan.config)).toContain("--group=daemon")
  })

  it("a group that does not exist is refused before anything is spawned", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      try {
        const mark = `${dir}/spawned`
        const binary = fakeDockerd(
          dir,
          `require("node:fs").writeFileSync(${JSON.stringify(mark)}, "")`
        )
        const error = yield* Effect.flip(
          Effect.scoped(
            Dockerd.start(
              isolatedConfig(dir, { binary, network: "host", socketGroup: "sdx-no-such-group" })
            )
          ).pipe(Effect.provide(Dockerd.layerNode))
        )
        expect(error).toMatchObject({ _tag: "InvalidConfig", field: "socketGroup" })
        expect(error.message).toContain("groupadd sdx-no-such-group")
        expect(existsSync(mark)).toBe(false)
      } finally {
        removeDir(dir)
      }
    }).pipe(Effect.runPromise))

  describe.skipIf(!real)("on a real dockerd", () => {
    const startAndStat = (overrides: Partial<DockerdConfig.DockerdConfigInput>) =>
      Effect.gen(function* () {
        const dir = tempDir()
        try {
          const info = yield* Effect.scoped(
            Effect.gen(function* () {
              const daemon = yield* Dockerd.start(
                isolatedConfig(dir, { stopGrace: 5_000, ...overrides }),
                ReadinessPolicy.fast.withDeadline("40 seconds")
              )
              return statSync(daemon.socket)
            })
          ).pipe(Effect.provide(Dockerd.layerNode))
          expect(yield* Effect.promise(() => leftovers(dir))).toEqual([])
          return info
        } finally {
          removeDir(dir)
        }
      })

    it.live("default on a real dockerd: the socket is 0660 (dockerd's own mode, left so)", () =>
      Effect.gen(function* () {
        const info = yield* startAndStat({})
        expect(info.isSocket()).toBe(true)
        expect(info.mode & 0o777).toBe(0o660)
      })
    )

    it.live("--socket-mode 0600 and a group: stat shows both", () =>
      Effect.gen(function* () {
        const gid = gidOf("daemon")
        const info = yield* startAndStat({
          socketMode: "0600",
          ...(gid === undefined ? {} : { socketGroup: "daemon" })
        })
        expect(info.mode & 0o777).toBe(0o600)
        if (gid !== undefined) expect(info.gid).toBe(gid)
      })
    )
  })
  describe("applied by the library (DockerHost.applySocketMode)", () => {
    const socketMade = (dir: string, mode: number) =>
      Effect.acquireRelease(
        Effect.async<string>((resume) => {
          const path = `${dir}/docker.sock`
          const server = createServer().listen(path, () => {
            chmodSync(path, mode)
            resume(Effect.succeed(path))
          })
          servers.push(server)
        }),
        () => Effect.sync(() => servers.splice(0).forEach((server) => server.close()))
      )
    const servers: Array<Server> = []

    it.scopedLive(
      "a real socket made 0777: the default 0660 is applied (a real dockerd makes 0660 itself, so cannot show it)",
      () =>
        Effect.gen(function* () {
          const dir = yield* Effect.acquireRelease(Effect.sync(tempDir), (dir) =>
            Effect.sync(() => removeDir(dir))
          )
          const socket = yield* socketMade(dir, 0o777)
          expect(statSync(socket).mode & 0o777).toBe(0o777)
          const host = yield* DockerHost.DockerHost
          yield* host.applySocketMode(yield* DockerdConfig.decode({ socket }))
          expect(statSync(socket).mode & 0o777).toBe(0o660)
        }).pipe(Effect.provide(DockerHost.layer))
    )

    it.effect(
      "no socket to give the mode to: SocketModeNotApplied naming the socket, the mode and the reason",
      () =>
        Effect.gen(function* () {
          const host = yield* DockerHost.DockerHost
          const socket = `/nonexistent-sdx-${process.pid}/docker.sock`
          const error = yield* Effect.flip(
            host.applySocketMode(yield* DockerdConfig.decode({ socket, socketMode: "0600" }))
          )
          expect(error).toMatchObject({
            _tag: "SocketModeNotApplied",
            socket,
            mode: "0600",
            reason: "ENOENT"
          })
          expect(error.message).toContain("choose another --socket-mode")
        }).pipe(Effect.provide(DockerHost.layer))
    )

    it.scoped(
      "a mode that cannot be applied once ready: the start fails with SocketModeNotApplied and its daemon is stopped (TestClock)",
      () =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(
            Effect.flip(Dockerd.start({ socket: "/run/test/docker.sock", socketMode: "0600" }))
          )
          yield* TestClock.adjust("5 seconds")
          expect(yield* Fiber.join(fiber)).toMatchObject({
            _tag: "SocketModeNotApplied",
            socket: "/run/test/docker.sock",
            mode: "0600",
            reason: "PermissionDenied"
          })
          const test = yield* TestProcessManager.TestProcessManager
          expect((yield* test.processes).length).toBe(1)
          expect(yield* test.running).toEqual([])
        }).pipe(Effect.provide(refusingChmod(TestDocker.layer({ readyAfter: "1 second" }))))
    )
  })
})

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

/** A logger that keeps every log line with its annotations, as text. */
const capturingLogger = (lines: Array<string>) =>
  Logger.make(({ annotations, cause, message, spans }) => {
    lines.push(
      JSON.stringify({
        message,
        annotations: Object.fromEntries(HashMap.toEntries(annotations)),
        spans: List.toArray(spans).map((span) => span.label),
        cause: Cause.isEmpty(cause) ? undefined : Cause.pretty(cause)
      })
    )
  })

describe("secrets", () => {
  const SECRET = "hunter2-sdx-Zq8"
  const URL_PASSWORD = "p4ss-sdx-Yw1"

  it("redactArgv: secret flags, URL passwords and known secrets; each element stays one", () => {
    const argv = [
      "docker",
      "login",
      "-u",
      "me",
      "-p",
      SECRET,
      "--password=x1",
      "--token",
      "x2",
      `--registry-mirror=https://me:${URL_PASSWORD}@mirror.example`,
      `--label=${SECRET}`,
      "--debug"
    ]
    const shown = redactArgv(argv, [Redacted.make(SECRET)])
    expect(shown).toHaveLength(argv.length)
    expect(shown.join(" ")).not.toContain(SECRET)
    expect(shown.join(" ")).not.toContain(URL_PASSWORD)
    expect(shown.join(" ")).not.toMatch(/x1|x2/)
    expect(shown).toContain("--password=<redacted>")
    expect(shown).toContain(
      "https://me:<redacted>@mirror.example".replace(/^/, "--registry-mirror=")
    )
    expect(shown.at(-1)).toBe("--debug")
    expect(redactText(`a ${SECRET} b ${SECRET}`, [SECRET])).toBe(`a ${REDACTED} b ${REDACTED}`)
  })

  it("a configuration refused for a bad secret value never quotes it", async () => {
    for (const input of [
      { env: { TOKEN: { secret: SECRET, extra: 1 } } },
      { env: { TOKEN: { secret: `${SECRET}\0` } } },
      { env: { TOKEN: { secret: SECRET } }, nope: SECRET }
    ]) {
      const error = await refusal(input)
      expect(JSON.stringify(error) + error.message).not.toContain(SECRET)
    }
  })

  it("Dockerd.start, failing: the secret reaches dockerd's environment and no argv, log, event or error", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      try {
        const delivered = `${dir}/delivered`
        // Starts, says a few things (not the secret), fails.
        const binary = fakeDockerd(
          dir,
          [
            `require("node:fs").writeFileSync(${JSON.stringify(delivered)}, process.env.SDX_TOKEN ?? "")`,
            `console.error('level=info msg="Starting up"')`,
            `console.error("failed to start daemon: error initializing graphdriver: driver not supported")`,
            `process.exit(1)`
          ].join("\n")
        )
        const events: Array<DaemonEvent> = []
        const logs: Array<string> = []
        const exit = yield* Effect.exit(
          Effect.scoped(
            Dockerd.start(
              isolatedConfig(dir, {
                binary,
                network: "host",
                env: {
                  SDX_TOKEN: { secret: SECRET },
                  HTTPS_PROXY: { secret: `http://me:${URL_PASSWORD}@proxy:3128` },
                  PLAIN: "visible"
                },
                extraArgs: [`--registry-mirror=https://me:${URL_PASSWORD}@mirror.example`]
              }),
              ReadinessPolicy.fast.withDeadline("20 seconds"),
              { onEvent: (event) => Effect.sync(() => void events.push(event)) }
            )
          ).pipe(
            Effect.provide(Dockerd.layerNode),
            Effect.provide(Logger.replace(Logger.defaultLogger, capturingLogger(logs))),
            Logger.withMinimumLogLevel(LogLevel.All)
          )
        )
        expect(readFileSync(delivered, "utf8")).toBe(SECRET)
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isSuccess(exit)) return
        const error = Option.getOrThrow(Cause.failureOption(exit.cause))
        expect(error._tag).toBe("DaemonCrashed")
        const everything = [
          JSON.stringify(error),
          error.message,
          String(error),
          Cause.pretty(exit.cause),
          JSON.stringify(events),
          ...logs
        ].join("\n")
        expect(events.map((event) => event._tag)).toContain("Spawned")
        expect(logs.length).toBeGreaterThan(0)
        expect(everything).toContain("driver not supported")
        expect(everything).not.toContain(SECRET)
        expect(everything).not.toContain(URL_PASSWORD)
      } finally {
        removeDir(dir)
      }
    }).pipe(Effect.runPromise))

  it("a spawn that fails and a command probe that fails: no secret in their errors", () =>
    Effect.gen(function* () {
      const manager = yield* ProcessManager
      // A caller's mistake: the secret in argv too. Still never shown.
      const spawnError = yield* Effect.flip(
        Effect.scoped(
          manager.exec([process.execPath, `--password=${SECRET}`, SECRET], {
            cwd: "/nonexistent-sdx-dir",
            env: { TOKEN: Redacted.make(SECRET) }
          })
        )
      )
      expect(spawnError._tag).toBe("SpawnFailed")
      expect(JSON.stringify(spawnError) + spawnError.message).not.toContain(SECRET)

      const probe = yield* Probe.command(
        [process.execPath, "-e", "console.error('denied: token rejected'); process.exit(3)"],
        { name: "login check", env: { TOKEN: Redacted.make(SECRET) } }
      )
      const failure = yield* Effect.flip(
        Probe.run(probe, { timeoutFor: () => Duration.seconds(5) })
      )
      expect(failure.message).toContain("token rejected")
      expect(JSON.stringify(failure) + failure.message).not.toContain(SECRET)
    }).pipe(Effect.provide(Dockerd.layerNode), Effect.runPromise))
})

// ---------------------------------------------------------------------------
// No shell
// ---------------------------------------------------------------------------

const SHELLS = new Set([
  "sh",
  "bash",
  "dash",
  "zsh",
  "/bin/sh",
  "/bin/bash",
  "/usr/bin/sh",
  "/usr/bin/bash"
])

/** Text full of what a shell would act on. */
const hostile = fc.oneof(
  fc.string({
    unit: fc.constantFrom(
      "$",
      "(",
      ")",
      "`",
      ";",
      "|",
      "&",
      "'",
      '"',
      " ",
      "\n",
      "*",
      "~",
      "\\",
      ">",
      "a",
      "/"
    ),
    minLength: 1,
    maxLength: 16
  }),
  fc.constantFrom(
    "$(touch /tmp/sdx-pwned)",
    "`id`",
    "; rm -rf /",
    "a b",
    "' || true '",
    "$HOME",
    "*"
  )
)
const segment = hostile.map((text) => text.replace(/\//g, "_").replace(/\0/g, "") || "x")

describe("no shell", () => {
  it("DockerdConfig.argv: never a shell, and every user value is one whole argv element", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          base: fc.tuple(segment, segment).map(([a, b]) => `/tmp/${a}/${b}`),
          sock: segment.map((name) => name.slice(0, 40)),
          binary: fc.oneof(
            fc.constant("dockerd"),
            segment.map((s) => `/opt/${s}/dockerd`)
          ),
          extra: fc.array(
            hostile.map((value) => `--label=${value}`),
            { maxLength: 3 }
          ),
          network: fc.constantFrom("host", "private", "netns"),
          group: fc.option(fc.constantFrom("docker", "105", "sdx_group"), { nil: undefined }),
          tls: fc.boolean()
        }),
        async (v) => {
          const values = {
            socket: `/tmp/${v.sock}.sock`,
            dataRoot: `${v.base}/data`,
            execRoot: `${v.base}/exec`,
            pidfile: `${v.base}/d.pid`,
            ca: `${v.base}/ca.pem`
          }
          const config = {
            binary: v.binary,
            socket: values.socket,
            dataRoot: values.dataRoot,
            execRoot: values.execRoot,
            pidfile: values.pidfile,
            extraArgs: v.extra,
            network: v.network === "netns" ? { netns: "sdx" } : v.network,
            ...(v.group === undefined ? {} : { socketGroup: v.group }),
            ...(v.tls && v.network !== "private"
              ? {
                  tcp: {
                    address: "127.0.0.1:2376",
                    tls: { ca: values.ca, cert: values.ca, key: values.ca }
                  }
                }
              : {}),
            env: { X: "sdx-env-only" }
          }
          const argv = await argvOf(config)
          expect(SHELLS.has(argv[0])).toBe(false)
          expect(argv.some((arg) => SHELLS.has(arg) || arg === "-c")).toBe(false)
          expect([v.binary, "unshare", "nsenter"]).toContain(argv[0])
          const whole = (element: string) =>
            expect(argv.filter((arg) => arg === element)).toHaveLength(1)
          whole(`--host=unix://${values.socket}`)
          whole(`--data-root=${values.dataRoot}`)
          whole(`--exec-root=${values.execRoot}`)
          whole(`--pidfile=${values.pidfile}`)
          expect(argv.filter((arg) => arg === v.binary)).toHaveLength(1)
          for (const flag of v.extra) expect(argv).toContain(flag)
          // Nothing of the environment is in argv.
          expect(argv.join("\n")).not.toContain("sdx-env-only")
        }
      ),
      { seed: 31_337, numRuns: 300 }
    )
  })

  it("LocalProcessManager runs argv as given, without a shell: metacharacters arrive verbatim", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      try {
        const mark = `${dir}/pwned`
        const args = [
          `$(touch ${mark})`,
          `\`touch ${mark}\``,
          `; touch ${mark}`,
          "a b",
          `'"`,
          "*",
          "$HOME",
          "x\ny"
        ]
        const manager = yield* ProcessManager
        const output = yield* Effect.scoped(
          Effect.gen(function* () {
            const handle = yield* manager.exec(
              [
                process.execPath,
                "-e",
                "process.stdout.write(JSON.stringify([process.argv.slice(1), process.env.SDX_V]))",
                ...args
              ],
              { env: { SDX_V: `$(touch ${mark})` } }
            )
            yield* handle.awaitExit
            return (yield* handle.logTail).join("\n")
          })
        )
        expect(JSON.parse(output)).toEqual([args, `$(touch ${mark})`])
        expect(existsSync(mark)).toBe(false)
      } finally {
        removeDir(dir)
      }
    }).pipe(Effect.provide(Dockerd.layerNode), Effect.runPromise))

  it("the sources never start a shell with a value in its script", () => {
    const files = readdirSync("src", { recursive: true, encoding: "utf8" })
      .filter((file) => file.endsWith(".ts"))
      .map((file) => ({ file, text: readFileSync(Path.join("src", file), "utf8") }))
    for (const { file, text } of files) {
      expect(text, file).not.toMatch(/shell:\s*true|runInShell/)
      // From `node:child_process` only `spawn` (no shell unless asked for,
      // which the line above forbids), never `exec`/`execSync`, which run a
      // shell always, nor the whole module.
      for (const imported of text.matchAll(/import\s+([^;]*?)\s+from\s+"node:child_process"/g)) {
        const names = /^\{([^}]*)\}$/.exec((imported[1] ?? "").trim())?.[1]
        expect(names, `${file}: ${imported[0]}`).toBeDefined()
        for (const name of (names ?? "")
          .split(",")
          .map((n) => n.trim())
          .filter(Boolean)) {
          expect(["spawn", "type ChildProcess"], `${file}: ${name}`).toContain(name)
        }
      }
      // `sh -c SCRIPT`: the script is a constant; values go after it, as
      // positional parameters ("$1"…), never into its text.
      for (const match of text.matchAll(
        /\[\s*(?:shell|"(?:\/bin\/)?(?:ba)?sh")\s*,\s*"-c"\s*,\s*([^,\]]+)/g
      )) {
        const script = (match[1] ?? "").trim()
        const constant = /^[A-Z][A-Z0-9_]*$/.test(script)
        const literal = /^"[^"$`]*"$/.test(script)
        const parameter = script === "script" && /runScript\(\s*[A-Z][A-Z0-9_]*\s*,/.test(text)
        expect(constant || literal || parameter, `${file}: sh -c ${script}`).toBe(true)
        if (constant) {
          const definition = new RegExp(`const ${script} = (\`[^\`]*\`|"[^"]*")`).exec(text)
          expect(definition?.[1], `${file}: ${script}`).toBeDefined()
          // `\${…}` is the shell's own expansion; an unescaped `${…}` would be a value.
          expect(definition?.[1], `${file}: ${script} interpolates`).not.toMatch(/(^|[^\\])\$\{/)
        }
      }
    }
    // Only ever called with constant scripts.
    for (const { file, text } of files) {
      for (const call of text.matchAll(/runScript\(\s*([^,]+),/g)) {
        if ((call[1] ?? "").trim() === "script: string") continue
        expect(call[1]?.trim(), file).toMatch(/^[A-Z][A-Z0-9_]*$/)
      }
    }
  })
})
