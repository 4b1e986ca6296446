// Generated from schemas/json/documents.ingestDir.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Indexes every text file under a folder (honouring .gitignore), removes vanished ones; reports progress.
 */
export interface DocumentsIngestDirParams {
  /**
   * The folder (absolute or relative to the server's working directory).
   */
  root: string;
  /**
   * Collection (default `"default"`, created on first use).
   */
  collection?: string | null;
  /**
   * Only files matching one of these globs (gitignore syntax, relative to `root`).
   */
  include?: string[] | null;
  /**
   * Not the files matching one of these globs.
   */
  exclude?: string[] | null;
  /**
   * Also wait until every chunk of the collection has its dense vector, reporting
   * the embedding as progress (default false: answer once BM25 is written).
   */
  waitForEmbeddings?: boolean | null;
}
