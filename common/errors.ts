/**
 * The user-facing failure kinds of MyRT's tools, one class each, each with its exit code.
 * Messages are sentence case with the offending value after a colon.
 */

/** Base of every user-facing failure; `exitCode` is what the CLI exits with. */
export class MyrtError extends Error {
  readonly exitCode: number = 1;
}

/** Wrong command-line usage (unknown flag, missing argument). */
export class UsageError extends MyrtError {
  override readonly name = "UsageError";
  override readonly exitCode = 2;
}

/** A bad configuration file: route table, state file. Message is `FILE:LINE: why` where a line applies. */
export class ConfigError extends MyrtError {
  override readonly name = "ConfigError";
  override readonly exitCode = 3;
}

/** The network key is missing, malformed or too widely readable. */
export class KeyError extends MyrtError {
  override readonly name = "KeyError";
  override readonly exitCode = 4;
}

/** A router could not be reached or answered with a failure status. */
export class NetworkError extends MyrtError {
  override readonly name = "NetworkError";
  override readonly exitCode = 5;
}

/** A router refused us: wrong network key. */
export class AuthError extends MyrtError {
  override readonly name = "AuthError";
  override readonly exitCode = 6;
}
