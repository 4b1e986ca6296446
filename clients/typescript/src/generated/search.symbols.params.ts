// Generated from schemas/json/search.symbols.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Definitions (functions, classes, …) by name, ranked like an editor's go-to-symbol.
 */
export interface SearchSymbolsParams {
  /**
   * A name, a prefix, `snake_case`/`camelCase` sub-words, a `*` glob, or a qualified
   * name (`Foo.bar`, `Foo::bar`).
   */
  query: string;
  /**
   * Collection (default `"default"`).
   */
  collection?: string | null;
  /**
   * Most symbols (1–100, default 20).
   */
  limit?: number | null;
  /**
   * Only these kinds (`function`, `method`, `class`, `struct`, `enum`, `interface`,
   * `trait`, `type`, `module`, `constant`, `field`, `constructor`, `enumMember`,
   * `macro`, `variable`).
   */
  kinds?: string[] | null;
  /**
   * Only symbols of files in these languages.
   */
  languages?: string[] | null;
  /**
   * Restrictions.
   */
  filter?: SymbolsFilter | null;
}
/**
 * `search/symbols` filter.
 */
export interface SymbolsFilter {
  /**
   * Only symbols in files at this path or under this folder.
   */
  pathPrefix?: string | null;
}
