import Blkif
import FakeXen
@testable import Oracle
import Testing
import Trace

@Suite struct ResponseCheckTests {
    let prediction = Prediction(responses: [ExpectedResponse(vbd: 0, id: 1, status: .okay)])

    @Test func theExpectedAnswerPasses() {
        #expect(Checks.response(prediction, observe(publications: [response(id: 1, .okay)], for: prediction)) == [])
    }

    @Test func aWrongStatusNamesBoth() {
        let findings = Checks.response(prediction, observe(publications: [response(id: 1, .error)], for: prediction))
        #expect(findings == [Finding(.response, in: .responses, expected: "id 1 answered okay", seen: "error")])
    }

    @Test func anAnswerTwiceAndAnAnswerMissing() {
        let twice = Checks.response(prediction, observe(publications: [response(id: 1, .okay), response(id: 1, .okay)],
                                                        for: prediction))
        #expect(twice.map(\.expected) == ["no response for id 1 now (one per request)"])
        #expect(Checks.response(prediction, observe(for: prediction)).map(\.seen) == ["no response"])
    }
}

@Suite struct DataCheckTests {
    @Test func tokensWhereTheIOPutsThemPass() {
        let page = GuestPage(4)
        var prediction = Prediction()
        prediction.diskWrites.write(0xAB, at: 9, in: 0)
        prediction.guestWrites.write(0xCD, at: 2, in: page)
        var world = StubWorld()
        world.diskTokens[0] = [9: 0xAB]
        world.guestTokens[page] = [2: 0xCD]
        #expect(Checks.data(prediction, in: world) == [])

        world.diskTokens[0] = [9: 0xEE]
        let findings = Checks.data(prediction, in: world)
        #expect(findings == [Finding(.data, in: .data, expected: "every token where the I/O puts it",
                                     seen: "disk sector 9: expected 0xab, seen 0xee")])
    }
}

@Suite struct OverflowAlertCheckTests {
    @Test func oneAlertWhenTheLimitIsFirstReached() {
        let prediction = Prediction(alerts: .one)
        #expect(Checks.overflowAlert(prediction, observe([.alert(message: "limit")], for: prediction)) == [])
        let none = Checks.overflowAlert(prediction, observe(for: prediction))
        #expect(none.map(\.check) == [.overflowAlert])
        #expect(none.first?.expected == "one alert: the persistent limit is reached for the first time on this connection")
        #expect(none.first?.seen == "0 alert(s)")
    }

    @Test func noAlertOtherwise() {
        let prediction = Prediction()
        let findings = Checks.overflowAlert(prediction, observe([.alert(message: "limit")], for: prediction))
        #expect(findings.map(\.expected) == ["no alert"])
    }

    @Test func anAbortedRequestMayOrMayNotHaveAlerted() {
        let prediction = Prediction(alerts: .noneOrOne(vbd: 0))
        #expect(Checks.overflowAlert(prediction, observe(for: prediction)) == [])
        #expect(Checks.overflowAlert(prediction, observe([.alert(message: "limit")], for: prediction)) == [])
        let twice = observe([.alert(message: "limit"), .alert(message: "limit")], for: prediction)
        #expect(Checks.overflowAlert(prediction, twice).map(\.seen) == ["2 alert(s)"])
    }
}
