// Generated from schemas/json/search.symbols.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Definitions (functions, classes, …) by name, ranked like an editor's go-to-symbol.
 */
export interface SearchSymbolsResult {
  /**
   * Most relevant first: the exact name, then a prefix, sub-words, a substring, a
   * near miss; definitions before declarations.
   */
  symbols: SymbolHit[];
}
/**
 * One symbol found.
 */
export interface SymbolHit {
  /**
   * Its name.
   */
  name: string;
  /**
   * LSP `SymbolKind` in camelCase, or `trait`, `type`, `macro`.
   */
  kind: string;
  /**
   * Absolute path of its file.
   */
  path: string;
  /**
   * First line (1-based).
   */
  line: number;
  /**
   * Last line (1-based).
   */
  endLine: number;
  /**
   * Its file's language.
   */
  language: string;
  /**
   * Enclosing definitions, outermost first, joined by `.`.
   */
  container?: string | null;
  /**
   * The definition's first line.
   */
  signature?: string | null;
  /**
   * How well it matches, 0–1 (1: the exact name).
   */
  score: number;
}
