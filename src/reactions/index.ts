export { requireEmoji, MAX_EMOJI_BYTES } from "./emoji.ts";
export {
  ReactionBatcher,
  type OnReactionsCommitted,
  type ReactionBatcherOptions,
  type ReactionCommand,
  type ReactionOutcome,
} from "./reaction-batcher.ts";
export { addReaction, removeReaction } from "./reaction-handlers.ts";
export { toReactionSummaries } from "./reaction-mapper.ts";
export { findReactionSummaries, targetKey } from "./reaction-repository.ts";
