// Generated from schemas/json/search.query.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * How a search ranks.
 */
export type SearchMode = "hybrid" | "sparse" | "dense";

/**
 * Ranked chunks for a query, deduplicated per chunk, with snippets.
 */
export interface SearchQueryParams {
  /**
   * Words, identifiers or a description.
   */
  query: string;
  /**
   * Collection (default `"default"`).
   */
  collection?: string | null;
  /**
   * Most hits (1–100, default 10).
   */
  limit?: number | null;
  /**
   * Restrictions.
   */
  filter?: QueryFilter | null;
  /**
   * Ranking: `hybrid` (BM25 and the embedding fused), `sparse` (BM25) or `dense`
   * (the embedding). Default: `hybrid` when the collection has dense vectors of
   * this server's model, else `sparse`.
   */
  mode?: SearchMode | null;
}
/**
 * `search/query` filter.
 */
export interface QueryFilter {
  /**
   * Only documents at this path or under this folder.
   */
  pathPrefix?: string | null;
  /**
   * Only documents of these languages (`python`, `rust`, `markdown`, ...).
   */
  languages?: string[] | null;
}
