/// The names of a grid of files and directories by number (`z12`, `y3`, `x7.wkw`, `x7.raw`), as
/// the WKW layout and the mount's views spell them.
public enum GridName {
    /// The number in `name`: `z12` (prefix `z`) -> 12, `x3.raw` (suffix `.raw`) -> 3; nil for any
    /// other name, including leading zeros, which no writer of these names makes.
    public static func index(_ name: String, _ prefix: Character, _ suffix: String = "") -> Int? {
        guard name.first == prefix, name.hasSuffix(suffix) else { return nil }
        let digits = name.dropFirst().dropLast(suffix.count)
        guard !digits.isEmpty, digits.count < 10, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
            digits == "0" || digits.first != "0"
        else { return nil }
        return Int(digits)
    }
}
