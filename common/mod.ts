/**
 * Code shared by router/, xufs/ and cli/ that belongs to none of them: byte helpers, the
 * user-facing error classes, byte-stream I/O, the user's files and the version string.
 */
export * from "./bytes.ts";
export * from "./errors.ts";
export * from "./io.ts";
export * from "./fs.ts";
export * from "./version.ts";
