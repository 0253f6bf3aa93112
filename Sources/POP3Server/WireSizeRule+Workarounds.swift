import Maildrop
import POP3

extension WireSizeRule {
    /// The variant of the wire-size rule `pop3_client_workarounds` asks for: the sizes Maildrop
    /// lists must be what `MessageEncoder` then sends with the same workarounds (ARCHITECTURE.md
    /// "One wire-size rule"). Only `oe-ns-eoh` changes a size. Built from the session's own
    /// copy of the setting, the one its encoder uses.
    init(_ workarounds: ClientWorkarounds) {
        self.init(addsMissingHeaderEnd: workarounds.contains(.oeNsEoh))
    }
}
