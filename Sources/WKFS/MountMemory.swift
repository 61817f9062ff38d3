internal import CFUSE

/// Process-wide memory settings for a mount server.
public enum MountMemory {
    /// Keeps the server's memory near its cache size: few malloc arenas, freed memory returned.
    /// Call once, before the session starts its threads.
    public static func configure() {
        cfuse_limit_malloc_arenas()
    }
}
