/**
 * Secrets (a registry password, an environment value marked secret) never
 * appear in argv, logs, events or errors. They travel as Effect's `Redacted`
 * (which prints as `<redacted>`), are revealed only where they are handed to
 * a process (its environment or its standard input, never its argv), and
 * whatever text may have picked one up on the way (a command line, an error
 * message) goes through {@link redactText} or {@link redactArgv} before it is
 * shown.
 *
 * @since 0.1.0
 */
import * as Redacted from "effect/Redacted"

/**
 * What a secret is replaced with.
 *
 * @since 0.1.0
 * @category constants
 */
export const REDACTED = "<redacted>"

/**
 * A value that may be a secret.
 *
 * @since 0.1.0
 * @category models
 */
export type MaybeSecret = string | Redacted.Redacted<string>

/**
 * The plain value: only for handing it to a process.
 *
 * @since 0.1.0
 * @category secrets
 */
export const reveal = (value: MaybeSecret): string =>
  Redacted.isRedacted(value) ? Redacted.value(value) : value

/**
 * An environment with its secrets revealed: only for handing it to a
 * process.
 *
 * @since 0.1.0
 * @category secrets
 */
export const revealEnv = (
  env: Readonly<Record<string, MaybeSecret>> | undefined
): Record<string, string> =>
  Object.fromEntries(Object.entries(env ?? {}).map(([key, value]) => [key, reveal(value)]))

/**
 * The secret values among `values` (the `Redacted` ones, non-empty).
 *
 * @since 0.1.0
 * @category secrets
 */
export const secretsOf = (values: Iterable<unknown>): ReadonlyArray<string> => {
  const found: Array<string> = []
  for (const value of values) {
    if (Redacted.isRedacted(value)) {
      const plain = Redacted.value(value)
      if (typeof plain === "string" && plain.length > 0) found.push(plain)
    }
  }
  return found
}

/**
 * The secrets anywhere in an unknown input (a configuration before it is
 * decoded): `Redacted` values and the strings of `{ secret }` objects.
 *
 * @since 0.1.0
 * @category secrets
 */
export const secretsIn = (input: unknown): ReadonlyArray<string> => {
  const found: Array<string> = []
  const seen = new Set<unknown>()
  const visit = (value: unknown, depth: number): void => {
    if (depth > 32 || value === null || typeof value !== "object" || seen.has(value)) return
    seen.add(value)
    if (Redacted.isRedacted(value)) {
      found.push(...secretsOf([value]))
      return
    }
    if (!Array.isArray(value) && "secret" in value) {
      const secret = (value as { readonly secret: unknown }).secret
      if (typeof secret === "string" && secret.length > 0) found.push(secret)
    }
    for (const child of Object.values(value)) visit(child, depth + 1)
  }
  visit(input, 0)
  return found
}

/**
 * `text` with every occurrence of each secret replaced by `<redacted>`.
 *
 * @since 0.1.0
 * @category redaction
 */
export const redactText = (text: string, secrets: Iterable<MaybeSecret>): string => {
  const plain = [...secrets]
    .map(reveal)
    .filter((secret) => secret.length > 0)
    // The longest first, so that a secret containing another goes whole.
    .sort((a, b) => b.length - a.length)
  let out = text
  for (const secret of plain) out = out.split(secret).join(REDACTED)
  return out
}

/**
 * Flags whose value is a secret, in any program's argv.
 *
 * @since 0.1.0
 * @category redaction
 */
export const SECRET_FLAGS: ReadonlySet<string> = new Set([
  "--password",
  "--passwd",
  "--token",
  "--secret",
  "--client-secret",
  "--api-key",
  "--access-key",
  "--secret-key"
])

/** `scheme://user:password@host`: the password of a URL. */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):([^\s/@]+)@/gi

/**
 * An argv fit to show: the values of {@link SECRET_FLAGS}
 * (`--password=x`, `--password x`, and `-p x` after `login`), the passwords
 * of URLs (`https://user:password@host`) and every one of `secrets` are
 * replaced by `<redacted>`. Each element stays one element.
 *
 * @since 0.1.0
 * @category redaction
 */
export const redactArgv = (
  argv: ReadonlyArray<string>,
  secrets: Iterable<MaybeSecret> = []
): ReadonlyArray<string> => {
  const known = [...secrets]
  const isLogin = argv.some((arg) => arg === "login")
  const out: Array<string> = []
  let hideNext = false
  for (const arg of argv) {
    if (hideNext) {
      out.push(REDACTED)
      hideNext = false
      continue
    }
    const [name, ...rest] = arg.split("=")
    if (name !== undefined && SECRET_FLAGS.has(name)) {
      if (rest.length > 0) out.push(`${name}=${REDACTED}`)
      else {
        out.push(arg)
        hideNext = true
      }
      continue
    }
    if (isLogin && arg === "-p") {
      out.push(arg)
      hideNext = true
      continue
    }
    out.push(redactText(arg.replace(URL_PASSWORD, `$1:${REDACTED}@`), known))
  }
  return out
}
