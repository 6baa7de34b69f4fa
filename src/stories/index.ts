export { StoryAccess } from "./story-access.ts";
export { StoryExpiry, expireDue, sweepExpired, type StoryExpiryScheduler } from "./story-expiry.ts";
export { StoryRemover, removeStoryRows } from "./story-remover.ts";
export { findDoomed, type DoomedStory } from "./story-repository.ts";
export { StoryService, type StoryServiceOptions } from "./story-service.ts";
export { canSee, relationOf, visibleTiers, type Relation, type RelationFlags } from "./story-privacy.ts";
