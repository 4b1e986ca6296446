// Generated from schemas/json/search.query.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Which candidate list found a hit.
 */
export type Source = "sparse" | "dense";

/**
 * Ranked chunks for a query, deduplicated per chunk, with snippets.
 */
export interface SearchQueryResult {
  /**
   * Best first. `score` is BM25 in `sparse` mode, cosine similarity in `dense`
   * mode, and the fused reciprocal-rank score in `hybrid` mode.
   */
  hits: SearchHit[];
  /**
   * The ranking used.
   */
  mode: "hybrid" | "sparse" | "dense";
}
/**
 * One hit.
 */
export interface SearchHit {
  /**
   * Absolute path of the document.
   */
  path: string;
  /**
   * Relevance, higher is better (see [`SearchResult::hits`]).
   */
  score: number;
  /**
   * Chunk position in the document, 0-based.
   */
  chunkIndex: number;
  /**
   * First line of the chunk, 1-based.
   */
  startLine: number;
  /**
   * Last line of the chunk, 1-based, inclusive.
   */
  endLine: number;
  /**
   * Up to three lines around the best-matching line of the chunk.
   */
  snippet: string;
  /**
   * First line of the snippet, 1-based.
   */
  snippetLine: number;
  /**
   * Language of the document.
   */
  language: string;
  /**
   * Stable id of the document.
   */
  documentId: string;
  /**
   * The candidate lists that found this chunk: `sparse` (BM25), `dense` (the
   * embedding), or both.
   */
  sources: Source[];
  /**
   * Where the chunk is in a document (PDF page, heading, EPUB chapter, notebook
   * cell); absent for plain text and code.
   */
  location?: Location | null;
}
/**
 * Where in a document a chunk is, as a person opens it (PROTOCOL.md §9 `location`).
 */
export interface Location {
  /**
   * PDF page, 1-based (the page's position in the file, as viewers number it).
   */
  page?: number | null;
  /**
   * Heading path of the section, outermost first, joined by ` > ` (HTML, DOCX, ODT,
   * EPUB, notebooks; a PDF's bookmark for the page when it has an outline).
   */
  heading?: string | null;
  /**
   * EPUB chapter: its title in the book's table of contents, else its first heading,
   * else its file name in the book.
   */
  chapter?: string | null;
  /**
   * Notebook cell, 1-based, counting every cell.
   */
  cell?: number | null;
}
