// Generated from schemas/json/collections.list.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Every collection with its chunk (`points`) and document counts.
 */
export interface CollectionsListResult {
  /**
   * Every collection, by name.
   */
  collections: CollectionInfo[];
}
/**
 * One collection in `collections/list`.
 */
export interface CollectionInfo {
  /**
   * Name.
   */
  name: string;
  /**
   * Chunks stored.
   */
  points: number;
  /**
   * Documents (files) stored.
   */
  documents: number;
  /**
   * The collection's embedding model and how far its chunks are embedded; absent for
   * a BM25-only collection.
   */
  dense?: DenseStatus | null;
}
/**
 * `collections/list`'s `dense` entry: the collection's model and how far its chunks
 * are embedded.
 */
export interface DenseStatus {
  /**
   * The model the collection's vectors come from (its name).
   */
  model: string;
  /**
   * Vector dimension.
   */
  dimension: number;
  /**
   * Chunks with a dense vector.
   */
  embedded: number;
  /**
   * Chunks still waiting for one (searchable by BM25 meanwhile).
   */
  pending: number;
}
