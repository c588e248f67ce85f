/**
 * Bad input, fuzzed: the command line and the configuration schema.
 *
 * - In-process, many runs: `parse` (argv → validated plan, the CLI's first
 *   step) on valid command lines with one bad thing put in (random strings,
 *   odd bytes, NUL, huge, negative and NaN durations, relative and overlong
 *   paths, unknown values and options, missing values, stray arguments):
 *   always a typed `InvalidArguments` or `InvalidUsage` whose message names
 *   the problem, never a defect or a stack trace. `parse` needs no
 *   ProcessManager: it cannot start anything.
 * - `DockerdConfig.decode` on random inputs: `InvalidConfig` naming a field,
 *   never a defect; what it accepts builds an argv.
 * - A few real runs of the built CLI on bad input: exit 2, the problem
 *   named, no stack trace, and no dockerd started (the only `dockerd` it
 *   could find is a stand-in that leaves a mark).
 *
 * Deterministic: fixed seeds (FC_SEED overrides), printed on failure.
 */
import { spawn } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parse } from "../src/cli/main.js"
import * as DockerdConfig from "../src/DockerdConfig.js"
import { InvalidConfig } from "../src/errors.js"
import { parseDuration } from "../src/internal/duration.js"
import { BIN } from "./support/cli.js"
import { removeDir, tempDir } from "./support/isolated.js"

const SEED = Number(process.env.FC_SEED ?? 424_242)
const STACK_LINE = /^\s+at /m

/** A directory for the paths of valid options; nothing is created in it. */
const BASE = "/tmp/sdx-fuzz"

/** A valid `up` command line, as option/value pairs. */
const validUp: ReadonlyArray<readonly [string, string]> = [
  ["--socket", `${BASE}/d.sock`],
  ["--data-root", `${BASE}/data`],
  ["--exec-root", `${BASE}/exec`],
  ["--pidfile", `${BASE}/d.pid`],
  ["--network", "host"],
  ["--deadline", "5s"]
]

/** Strings of every kind: any code point (lone surrogates too), ASCII, controls. */
const anyText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom("\0", "\n", "\t", " ", "\u001b", "$", "`", ";", "|", "\\"),
    maxLength: 8
  })
)

const notA = (predicate: (text: string) => boolean) => anyText.filter((text) => !predicate(text))

/** Durations that must be refused. */
const badDuration = fc.oneof(
  notA((text) => parseDuration(text)._tag === "Right"),
  fc.integer({ min: 25, max: 1_000_000_000 }).map((hours) => `${hours}h`),
  fc.integer({ min: 86_400_001, max: Number.MAX_SAFE_INTEGER }).map((ms) => `${ms}ms`),
  fc.constantFrom(
    "99999999h",
    "1e400s",
    "NaN",
    "NaNs",
    "Infinity",
    "-1s",
    "-0s",
    "",
    "  ",
    "5",
    "s"
  ),
  fc.integer({ min: 1, max: 1000 }).map((n) => `-${n}ms`)
)

const relativePath = anyText.filter((text) => !text.startsWith("/"))
const pathWithNul = fc
  .tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }))
  .map(([a, b]) => `${BASE}/${a}\0${b}`)
const badPath = fc.oneof(relativePath, pathWithNul)
const overlongSocket = fc
  .integer({ min: 108 - BASE.length, max: 4096 })
  .map((length) => `${BASE}/${"s".repeat(length)}`)
const notIn = (values: ReadonlyArray<string>) => anyText.filter((text) => !values.includes(text))
const badWhole = fc.oneof(
  notA((text) => /^\d{1,10}$/.test(text)),
  fc.constantFrom("-1", "1e9", "0x10", "1.5", "99999999999"),
  fc.integer({ min: 1001, max: 2 ** 31 }).map(String)
)

/**
 * One bad thing to put into a valid command line: the argv pieces, and what
 * the message must mention (the option, or the bad token).
 */
interface Injection {
  readonly kind: string
  readonly args: ReadonlyArray<string>
  readonly names: string
}

const option = (name: string, value: fc.Arbitrary<string>) =>
  value.map((v): Injection => ({ kind: name, args: [`--${name}`, v], names: name }))

const injection: fc.Arbitrary<Injection> = fc.oneof(
  option("deadline", badDuration),
  option("stop-grace", badDuration),
  option("socket", fc.oneof(badPath, overlongSocket)),
  option("data-root", fc.oneof(badPath, fc.constantFrom("/", "/tmp", "/tmp/..", "//", "/var/"))),
  option("exec-root", fc.oneof(badPath, fc.constantFrom("/", "/run", "/./"))),
  option("pidfile", badPath),
  option("dockerd", fc.oneof(pathWithNul, fc.constantFrom("", "  ", "-x", "--dockerd"))),
  option("profile", notIn(["default", "sandbox", "gvisor"])),
  option("policy", notIn(["fast", "seed"])),
  option("restart", notIn(["never", "on-failure"])),
  option("max-restarts", badWhole),
  option(
    "network",
    fc.oneof(
      anyText.filter(
        (text) =>
          text !== "host" && text !== "private" && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(text)
      ),
      fc.constantFrom("../x", "a/b", "x".repeat(65))
    )
  ),
  option(
    "arg",
    fc.oneof(
      anyText.filter((text) => !text.startsWith("-")),
      fc.constantFrom(
        "-H",
        "-Htcp://0.0.0.0:2375",
        "-DHtcp://0.0.0.0:2375",
        "--host=tcp://0.0.0.0:2375",
        "--host",
        "-G",
        "--group=docker",
        "--tlsverify",
        "--tlskey=/k",
        "--data-root=/x/y",
        "--pidfile=/x/p",
        "-p",
        "--debug\0"
      )
    )
  ),
  option(
    "socket-mode",
    notA((text) => /^\s*(0o?)?[0-7]{3}\s*$/.test(text))
  ),
  option("socket-mode", fc.constantFrom("0400", "0200", "0000", "0066", "01777", "666 6")),
  option(
    "socket-group",
    notA((text) => /^([A-Za-z_][A-Za-z0-9_.-]{0,31}|\d{1,10})$/.test(text))
  ),
  option(
    "tcp",
    notA((text) => /^[A-Za-z0-9.[\]:-]+:\d{1,5}$/.test(text))
  ),
  option("tcp", fc.constantFrom("tcp://127.0.0.1:2376", "127.0.0.1:0", "127.0.0.1:65536", ":2376")),
  // A valid TCP address without TLS, without --insecure-tcp.
  fc
    .constantFrom("127.0.0.1:2376", "0.0.0.0:2375", "[::1]:2376", "docker.example:2376")
    .map((address): Injection => ({
      kind: "tcp without TLS",
      args: ["--tcp", address],
      names: "tcp"
    })),
  fc.constantFrom("tls-ca", "tls-cert", "tls-key").map((name): Injection => ({
    kind: "tls without tcp",
    args: [`--${name}`, "/etc/x.pem"],
    names: name
  })),
  option("tls-key", badPath).map((bad): Injection => ({
    ...bad,
    args: [
      "--tcp",
      "127.0.0.1:2376",
      "--tls-ca",
      "/c/ca.pem",
      "--tls-cert",
      "/c/c.pem",
      ...bad.args
    ]
  })),
  // Missing values: a value-taking option last.
  fc
    .constantFrom(
      "socket",
      "deadline",
      "arg",
      "profile",
      "tcp",
      "socket-mode",
      "network",
      "max-restarts"
    )
    .map((name): Injection => ({ kind: "missing value", args: [`--${name}`], names: name })),
  // Unknown options and stray arguments.
  fc
    .stringMatching(/^[a-z][a-z0-9-]{0,20}$/)
    .filter(
      (name) =>
        ![
          "dockerd",
          "socket",
          "socket-mode",
          "socket-group",
          "tcp",
          "tls-ca",
          "tls-cert",
          "tls-key",
          "insecure-tcp",
          "data-root",
          "exec-root",
          "pidfile",
          "profile",
          "arg",
          "network",
          "policy",
          "deadline",
          "stop-grace",
          "restart",
          "max-restarts",
          "json",
          "help",
          "version",
          "wizard",
          "completions",
          "log-level"
        ].includes(name)
    )
    .map((name): Injection => ({
      kind: "unknown option",
      args: [`--${name}`],
      names: `--${name}`
    })),
  fc
    .stringMatching(/^[A-Za-z0-9_./]{1,20}$/)
    .map((token): Injection => ({ kind: "stray argument", args: [token], names: token }))
)

/** A valid `up` command line with the injection at a random place. */
const badUpArgv = fc
  .tuple(fc.shuffledSubarray([...validUp]), injection, fc.nat())
  .map(([pairs, bad, at]) => {
    // The injection's option replaces the valid one of the same name.
    const kept = pairs.filter(([name]) => !bad.args.includes(name))
    const parts: Array<ReadonlyArray<string>> = kept.map(([name, value]) => [name, value])
    // A missing value only means "missing" at the very end.
    const place = bad.kind === "missing value" ? parts.length : at % (parts.length + 1)
    parts.splice(place, 0, bad.args)
    return { argv: ["up", ...parts.flat()], bad }
  })

/** Bad `wait` command lines. */
const badWaitArgv: fc.Arbitrary<{ argv: ReadonlyArray<string>; bad: Injection }> = fc.oneof(
  fc.constant({ argv: ["wait"], bad: { kind: "missing socket", args: [], names: "socket" } }),
  fc.oneof(badPath, overlongSocket).map((socket) => ({
    argv: ["wait", "--socket", socket],
    bad: { kind: "bad socket", args: [], names: "socket" }
  })),
  fc
    .oneof(
      notA((text) => /^\d{1,10}$/.test(text)),
      fc.constantFrom("0", "-1", "1e3", "4194305", "99999999999"),
      fc.integer({ min: 4_194_305, max: 2 ** 31 }).map(String)
    )
    .map((pid) => ({
      argv: ["wait", "--socket", `${BASE}/d.sock`, "--pid", pid],
      bad: { kind: "bad pid", args: [], names: "pid" }
    })),
  badDuration.map((deadline) => ({
    argv: ["wait", "--socket", `${BASE}/d.sock`, "--deadline", deadline],
    bad: { kind: "bad deadline", args: [], names: "deadline" }
  }))
)

/** Runs `parse` in-process; the exit, and the error's text if it failed. */
const parseExit = (argv: ReadonlyArray<string>) => Effect.runPromiseExit(parse(argv))

const describeFailure = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "succeeded"

/** The invariants of a refused command line. */
const expectRefused = (exit: Exit.Exit<unknown, unknown>, names: string) => {
  if (Exit.isSuccess(exit)) throw new Error(`accepted: ${JSON.stringify(exit.value)}`)
  const cause = exit.cause
  if (cause._tag !== "Fail") throw new Error(`not one typed failure: ${Cause.pretty(cause)}`)
  const error = cause.error as { _tag: string; message: string }
  if (error._tag !== "InvalidArguments" && error._tag !== "InvalidUsage")
    throw new Error(`unexpected error ${error._tag}: ${error.message}`)
  if (STACK_LINE.test(error.message)) throw new Error(`a stack trace: ${error.message}`)
  if (!error.message.includes(names))
    throw new Error(`the message does not name ${JSON.stringify(names)}: ${error.message}`)
}

describe("parse: bad command lines, in-process", () => {
  it("a valid command line gives a plan and starts nothing", async () => {
    const exit = await parseExit(["up", ...validUp.flat(), "--socket-mode=0600", "--json"])
    expect(Exit.isSuccess(exit)).toBe(true)
    if (!Exit.isSuccess(exit)) return
    const plan = Option.getOrThrow(exit.value)
    expect(plan._tag).toBe("Up")
    if (plan._tag !== "Up") return
    expect(plan.config.socket).toBe(`${BASE}/d.sock`)
    expect(plan.config.socketMode).toBe(0o600)
    expect(plan.json).toBe(true)
  })

  it("up: one bad thing anywhere in a valid command line is refused, naming it", async () => {
    const kinds = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(badUpArgv, async ({ argv, bad }) => {
        kinds.set(bad.kind, (kinds.get(bad.kind) ?? 0) + 1)
        expectRefused(await parseExit(argv), bad.names)
      }),
      { seed: SEED, numRuns: 600 }
    )
    // Every kind of bad input was tried.
    expect(kinds.size).toBe(22)
  })

  it("wait: bad command lines are refused, naming the option", async () => {
    await fc.assert(
      fc.asyncProperty(badWaitArgv, async ({ argv, bad }) => {
        expectRefused(await parseExit(argv), bad.names)
      }),
      { seed: SEED, numRuns: 150 }
    )
  })

  it("random argv: a typed refusal or a valid plan, never a defect", async () => {
    const builtIn = new Set(["--help", "-h", "--version", "--wizard", "--completions"])
    const token = fc.oneof(
      anyText,
      fc.constantFrom(...validUp.flat(), "up", "wait", "--json", "--insecure-tcp", "--tcp", "--arg")
    )
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("up", "wait", "nope"),
        fc.array(
          token.filter((t) => !builtIn.has(t.split("=")[0] ?? t)),
          { maxLength: 8 }
        ),
        async (command, rest) => {
          const exit = await parseExit([command, ...rest])
          if (Exit.isSuccess(exit)) {
            // Accepted: then it is a complete, valid plan.
            const plan = Option.getOrThrow(exit.value)
            if (plan._tag === "Up") expect(DockerdConfig.argv(plan.config)[0]).toBeTruthy()
            return
          }
          expect(exit.cause._tag, describeFailure(exit)).toBe("Fail")
          const error = (exit.cause as Cause.Fail<{ _tag: string; message: string }>).error
          expect(["InvalidArguments", "InvalidUsage"]).toContain(error._tag)
          expect(error.message.length).toBeGreaterThan(0)
          expect(error.message).not.toMatch(STACK_LINE)
        }
      ),
      { seed: SEED, numRuns: 300 }
    )
  })
})

// ---------------------------------------------------------------------------
// DockerdConfig.decode
// ---------------------------------------------------------------------------

const FIELDS = [
  "binary",
  "socket",
  "socketMode",
  "socketGroup",
  "tcp",
  "allowInsecureTcp",
  "dataRoot",
  "execRoot",
  "pidfile",
  "profile",
  "extraArgs",
  "network",
  "stopGrace",
  "dockerCli",
  "env"
] as const

const validConfig = {
  socket: `${BASE}/d.sock`,
  dataRoot: `${BASE}/data`,
  execRoot: `${BASE}/exec`,
  pidfile: `${BASE}/d.pid`,
  network: "private",
  stopGrace: 2_000
} as const

/** Values of any shape, numbers of every kind included. */
const anyValue = fc.oneof(
  anyText,
  fc.constantFrom(
    -1,
    -0,
    0,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    1e300,
    2 ** 53,
    0.5
  ),
  fc.double(),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.anything({ maxDepth: 2 })
)

const decodeExit = (input: unknown) => Effect.runPromiseExit(DockerdConfig.decode(input))

/** The invariants of any decode: a config, or one InvalidConfig naming a field. */
const expectDecoded = (exit: Exit.Exit<DockerdConfig.DockerdConfig, InvalidConfig>) => {
  if (Exit.isSuccess(exit)) {
    const argv = DockerdConfig.argv(exit.value)
    for (const arg of argv) {
      expect(typeof arg).toBe("string")
      expect(arg).not.toContain("\0")
    }
    return undefined
  }
  expect(exit.cause._tag, Cause.pretty(exit.cause)).toBe("Fail")
  const error = (exit.cause as Cause.Fail<InvalidConfig>).error
  expect(error).toBeInstanceOf(InvalidConfig)
  expect(error.field.length).toBeGreaterThan(0)
  expect(error.problem.length).toBeGreaterThan(0)
  expect(error.message).not.toMatch(STACK_LINE)
  return error
}

describe("DockerdConfig.decode: bad configurations", () => {
  it("random inputs of any shape: a config or an InvalidConfig, never a defect", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          anyValue,
          fc.dictionary(fc.oneof(fc.constantFrom(...FIELDS), anyText), anyValue, { maxKeys: 6 })
        ),
        async (input) => {
          expectDecoded(await decodeExit(input))
        }
      ),
      { seed: SEED, numRuns: 500 }
    )
  })

  it("a valid configuration with one field made bad names that field", async () => {
    const badField = fc.oneof(
      fc.record({
        field: fc.constant("socket"),
        value: fc.oneof(
          badPath,
          overlongSocket,
          anyValue.filter((v) => typeof v !== "string" && v !== undefined)
        )
      }),
      fc.record({
        field: fc.constantFrom("dataRoot", "execRoot"),
        value: fc.oneof(badPath, fc.constantFrom("/", "/tmp", "/.."))
      }),
      fc.record({ field: fc.constant("pidfile"), value: badPath }),
      fc.record({
        field: fc.constant("stopGrace"),
        value: fc.constantFrom(
          -1,
          Number.NaN,
          Number.POSITIVE_INFINITY,
          1e300,
          86_400_001,
          "25h",
          "2 days",
          "10 parsecs",
          "-3 seconds",
          "NaN seconds",
          "",
          [1, -5],
          BigInt(-1),
          null
        )
      }),
      fc.record({ field: fc.constant("profile"), value: notIn(["default", "sandbox", "gvisor"]) }),
      fc.record({
        field: fc.constant("network"),
        value: fc.oneof(
          notIn(["host", "private"]),
          fc.record({ netns: fc.constantFrom("../x", "", "a b") })
        )
      }),
      fc.record({
        field: fc.constant("extraArgs"),
        value: fc.array(
          fc.constantFrom("x", "-Hunix:///x", "--host=tcp://1:2", "-G", "--tlsverify", "a\0"),
          { minLength: 1, maxLength: 3 }
        )
      }),
      fc.record({
        field: fc.constant("socketMode"),
        value: fc.oneof(
          notA((t) => /^\s*(0o?)?[0-7]{3}\s*$/.test(t)),
          fc.constantFrom(432, "0400")
        )
      }),
      fc.record({
        field: fc.constant("socketGroup"),
        value: fc.oneof(fc.constantFrom("a b", "", "x".repeat(40)), fc.integer())
      }),
      fc.record({
        field: fc.constant("tcp"),
        value: fc.oneof(fc.record({ address: anyText }), fc.constant({ address: "127.0.0.1:2376" }))
      }),
      fc.record({ field: fc.constant("binary"), value: fc.constantFrom("", " ", "-d", "a\0b", 5) }),
      fc.record({
        field: fc.constant("env"),
        value: fc.oneof(
          fc.constant({ "1X": "a" }),
          fc.constant({ X: 5 }),
          fc.constant({ X: { secret: 5 } }),
          fc.constant({ X: "a\0b" })
        )
      }),
      fc.record({
        field: anyText.filter(
          (k) => k.length > 0 && !(FIELDS as ReadonlyArray<string>).includes(k) && k !== "__proto__"
        ),
        value: anyValue
      })
    )
    await fc.assert(
      fc.asyncProperty(badField, async ({ field, value }) => {
        const input = { ...validConfig, [field]: value }
        if (field === "tcp") Object.assign(input, { network: "host" })
        const error = expectDecoded(await decodeExit(input))
        if (error === undefined) throw new Error(`accepted ${field}: ${JSON.stringify(value)}`)
        expect(error.field === field || error.field.startsWith(`${field}.`), error.message).toBe(
          true
        )
      }),
      { seed: SEED, numRuns: 400 }
    )
  })
})

// ---------------------------------------------------------------------------
// The built CLI, a few runs
// ---------------------------------------------------------------------------

describe("the built CLI on bad input", () => {
  let dir = ""
  let mark = ""

  beforeAll(() => {
    dir = tempDir("sdx-fuzz-")
    mark = `${dir}/dockerd-started`
    // The only dockerd the CLI can find: a stand-in that leaves a mark.
    mkdirSync(`${dir}/bin`)
    writeFileSync(
      `${dir}/bin/dockerd`,
      `#!${process.execPath}\nrequire("node:fs").writeFileSync(${JSON.stringify(mark)}, String(process.pid))\nprocess.exit(1)\n`
    )
    chmodSync(`${dir}/bin/dockerd`, 0o755)
  })
  afterAll(() => removeDir(dir))

  const runCli = (argv: ReadonlyArray<string>) =>
    new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...argv], {
        env: { ...process.env, PATH: `${dir}/bin:/usr/bin:/bin:/usr/sbin:/sbin` },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
      child.on("error", reject)
      child.on("close", (code) => resolve({ code, output }))
    })

  it("exit 2, the problem named, no stack trace, no dockerd started", async () => {
    // Node refuses NUL bytes in argv: those are covered in-process.
    const samples = fc.sample(
      fc
        .oneof(badUpArgv, badWaitArgv)
        .filter(({ argv }) => !argv.some((arg) => arg.includes("\0"))),
      { seed: SEED, numRuns: 10 }
    )
    const runs = await Promise.all(samples.map(({ argv }) => runCli(argv)))
    runs.forEach(({ code, output }, i) => {
      const { argv, bad } = samples[i]!
      const context = `${JSON.stringify(argv)}\n${output}`
      expect(code, context).toBe(2)
      expect(output, context).toContain(bad.names)
      expect(output, context).not.toMatch(STACK_LINE)
    })
    expect(existsSync(mark)).toBe(false)
  })
})
