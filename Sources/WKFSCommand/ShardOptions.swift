import ArgumentParser
import Foundation
import WebKnossos

/// `I/N`: the I-th of N parts.
struct ShardArgument: ExpressibleByArgument, Sendable {
    var shard: WorkShard
    init?(argument: String) {
        let parts = argument.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), let shard = try? WorkShard(index: i, count: n) else { return nil }
        self.shard = shard
    }
}

/// `--shard I/N`, or the part a job scheduler gives this process.
struct ShardOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Do the I-th of N disjoint parts of the work (0 <= I < N), split by data file; N processes together do it all.",
            discussion: "Without it: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT of a SLURM job array, or JOB_COMPLETION_INDEX with WKFS_SHARD_COUNT (a Kubernetes indexed job).",
            valueName: "I/N"))
    var shard: ShardArgument?

    /// The part this process does.
    func resolved(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> WorkShard {
        if let shard { return shard.shard }
        func number(_ name: String) throws -> Int? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("\(name)=\(text) is not a number")
            }
            return value
        }
        if let id = try number("SLURM_ARRAY_TASK_ID"), let count = try number("SLURM_ARRAY_TASK_COUNT") {
            // Arrays may start anywhere and step (--array=1-8:2): the part is the task's place.
            let first = try number("SLURM_ARRAY_TASK_MIN") ?? 0
            let step = max(1, try number("SLURM_ARRAY_TASK_STEP") ?? 1)
            do {
                let shard = try WorkShard(index: (id - first) / step, count: count)
                // Said in the job's log: a plain command in an array job does only its part.
                printError("wkfs: doing part \(shard) of the work (SLURM_ARRAY_TASK_ID=\(id), SLURM_ARRAY_TASK_COUNT=\(count)); --shard 0/1 does it all")
                return shard
            } catch {
                throw ValidationError("SLURM_ARRAY_TASK_ID=\(id) (from \(first), step \(step)) is not a task of an array of \(count)")
            }
        }
        if let index = try number("JOB_COMPLETION_INDEX") {
            guard let count = try number("WKFS_SHARD_COUNT") else {
                throw ValidationError("JOB_COMPLETION_INDEX is set but WKFS_SHARD_COUNT (the job's completions) is not: set it, or pass --shard I/N")
            }
            do {
                let shard = try WorkShard(index: index, count: count)
                printError("wkfs: doing part \(shard) of the work (JOB_COMPLETION_INDEX=\(index), WKFS_SHARD_COUNT=\(count)); --shard 0/1 does it all")
                return shard
            } catch {
                throw ValidationError("JOB_COMPLETION_INDEX=\(index) is not below WKFS_SHARD_COUNT=\(count)")
            }
        }
        return .whole
    }
}
