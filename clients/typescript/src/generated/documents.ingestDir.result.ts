// Generated from schemas/json/documents.ingestDir.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Indexes every text file under a folder (honouring .gitignore), removes vanished ones; reports progress.
 */
export interface DocumentsIngestDirResult {
  /**
   * Text files found (indexed now or unchanged).
   */
  files: number;
  /**
   * Chunks written.
   */
  chunks: number;
  /**
   * Files whose content hash was unchanged (nothing written).
   */
  unchanged: number;
  /**
   * Documents removed because their file vanished from under the root.
   */
  removed: number;
  /**
   * Files not indexed, with the reason.
   */
  skipped: Skipped[];
  /**
   * Wall time in milliseconds.
   */
  elapsedMs: number;
}
/**
 * A file that was not indexed, and why.
 */
export interface Skipped {
  /**
   * Absolute path.
   */
  path: string;
  /**
   * Why, for people (`binary file`, `too large: …`, `not UTF-8 text`, `empty file`,
   * `unreadable: …`, `symlink loop: …`).
   */
  reason: string;
}
