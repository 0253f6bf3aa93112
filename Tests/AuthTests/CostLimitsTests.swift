import Testing
@testable import Auth

@Suite struct CostLimitsTests {
    /// A bcrypt hash of cost 31 ties a worker up for about 30 hours per attempt; rounds=999999999
    /// about 4 minutes. Such lines are refused at load with a diagnostic naming the line.
    @Test func overCostLinesAreRefusedWithTheirLineNumber() {
        let bcrypt31 = "$2b$31$" + String(repeating: "a", count: 53)
        let text = """
        ok1:{BLF-CRYPT}$2b$14$abcdefghijklmnopqrstuuJ0Ym1Yq2xX8rX0C9N8Lw9zq5w8s5T1a
        slow1:{BLF-CRYPT}\(bcrypt31)
        slow2:{SHA512-CRYPT}$6$rounds=999999999$salt$hash
        ok2:{SHA512-CRYPT}$6$rounds=1000000$salt$hash
        slow3:$5$rounds=1000001$salt$hash
        slow4:{CRYPT}\(bcrypt31)
        slow5:{SCRAM-SHA-256}10000000,c2FsdA==,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
        ok3:{SCRAM-SHA-256}1000000,c2FsdA==,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
        slow6:{CRYPT}$sha1$4294967295$salt$hash
        slow7:{CRYPT}_zzzzsalthash
        ok4:{CRYPT}_/..1salthash
        slow8:{SHA256-CRYPT}$5$rounds=99999999999999999999999$salt$hash
        """
        let (file, diags) = PasswdFile.parse(Array(text.utf8), path: "/etc/pop3d/passwd")
        let byLine = Dictionary(grouping: diags, by: \.line).mapValues { $0.map(\.message).joined() }
        #expect(byLine[2]?.contains("bcrypt cost 31 above the limit 14") == true)
        #expect(byLine[3]?.contains("rounds=999999999 above the limit 1000000") == true)
        #expect(byLine[5]?.contains("rounds=1000001 above") == true)
        #expect(byLine[6]?.contains("bcrypt cost 31") == true)
        #expect(byLine[7]?.contains("iteration count 10000000 above the limit 1000000") == true)
        #expect(byLine[9]?.contains("$sha1$ is not accepted") == true)
        #expect(byLine[10]?.contains("BSDi crypt rounds") == true)
        #expect(byLine[12]?.contains("bad rounds= field") == true)
        #expect(diags.count == 8, "\(diags)")
        #expect(diags.allSatisfy { $0.description.hasPrefix("/etc/pop3d/passwd:\($0.line): ") })
        for user in ["slow1", "slow2", "slow3", "slow4", "slow5", "slow6", "slow7", "slow8"] {
            #expect(file.lookup(user) == nil, "\(user)")
        }
        for user in ["ok1", "ok2", "ok3", "ok4"] {
            #expect(file.lookup(user) != nil, "\(user)")
        }
    }

    @Test func memoryHardHashesAreBoundedByLibxcryptsOwnCounts() throws {
        // Debian's default yescrypt (count 5) and the highest allowed count pass.
        for count: UInt in [5, CostLimits.maxMemoryHardCount] {
            let setting = try #require(Crypto.gensalt(prefix: "$y$", count: count))
            #expect(CostLimits.cryptProblem(setting + Array("hash".utf8)) == nil, "\(count)")
        }
        let scrypt = try #require(Crypto.gensalt(prefix: "$7$", count: 7))
        #expect(CostLimits.cryptProblem(scrypt) == nil)
        // count 11 and hand-made parameters are refused.
        let eleven = try #require(Crypto.gensalt(prefix: "$y$", count: 11))
        #expect(CostLimits.cryptProblem(eleven) != nil)
        #expect(CostLimits.cryptProblem(Array("$y$jzT$salt$hash".utf8)) != nil)
        #expect(CostLimits.cryptProblem(Array("$7$zU..../....salt$hash".utf8)) != nil)
        // Fixed-cost methods pass.
        #expect(CostLimits.cryptProblem(Array("abNANd1rDfiNc".utf8)) == nil)
        #expect(CostLimits.cryptProblem(Array("$1$salt$hash".utf8)) == nil)
        #expect(CostLimits.cryptProblem(Array("$6$salt$hash".utf8)) == nil)
    }

    @Test func passwordsAboveTheLengthCapNeverMatch() {
        let long = [UInt8](repeating: UInt8(ascii: "p"), count: CostLimits.maxPasswordLength + 1)
        let atCap = [UInt8](repeating: UInt8(ascii: "p"), count: CostLimits.maxPasswordLength)
        let plainLong = UserEntry(user: "u", scheme: .plain, secret: long)
        let plainAtCap = UserEntry(user: "u", scheme: .plain, secret: atCap)
        #expect(!verify(password: long, entry: plainLong))
        #expect(verify(password: atCap, entry: plainAtCap))
    }
}
