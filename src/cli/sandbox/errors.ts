/**
 * The errors only the `sandbox` commands raise.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * No sandbox of that name or id on the host engine (or the container there
 * is not a sandbox, or is not running).
 *
 * @since 0.1.0
 * @category errors
 */
export class SandboxNotFound extends Schema.TaggedError<SandboxNotFound>()("SandboxNotFound", {
  sandbox: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `sandbox ${JSON.stringify(this.sandbox)}: ${this.reason}`
  }
}

/**
 * The command given to `sandbox exec` is not in the sandbox.
 *
 * @since 0.1.0
 * @category errors
 */
export class CommandNotFound extends Schema.TaggedError<CommandNotFound>()("CommandNotFound", {
  command: Schema.String,
  searched: Schema.Array(Schema.String)
}) {
  override get message(): string {
    const where = this.searched.length > 0 ? ` (searched ${this.searched.join(":")})` : ""
    return `${JSON.stringify(this.command)} was not found in the sandbox${where}`
  }
}
