import Blkif
import FakeXen
@testable import Oracle
import Testing
import Trace

@Suite struct ResponseCheckTests {
    let prediction = Prediction(responses: [ExpectedResponse(vbd: 0, id: 1, status: .okay)])

    @Test func theExpectedAnswerPasses() {
        #expect(found { Checks.response(prediction, published: [response(id: 1, .okay)], into: &$0) } == [])
    }

    @Test func aWrongStatusNamesBoth() {
        let findings = found { Checks.response(prediction, published: [response(id: 1, .error)], into: &$0) }
        #expect(findings == [Finding(.response, in: .responses, expected: "id 1 answered okay", seen: "error")])
    }

    @Test func anAnswerTwiceAndAnAnswerMissing() {
        let twice = found { Checks.response(prediction, published: [response(id: 1, .okay), response(id: 1, .okay)],
                                               into: &$0) }
        #expect(twice.map(\.expected) == ["no response for id 1 now (one per request)"])
        #expect(found { Checks.response(prediction, published: [], into: &$0) }.map(\.seen) == ["no response"])
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
        #expect(found { Checks.data(prediction, in: world, into: &$0) } == [])

        world.diskTokens[0] = [9: 0xEE]
        let findings = found { Checks.data(prediction, in: world, into: &$0) }
        #expect(findings == [Finding(.data, in: .data, expected: "every token where the I/O puts it",
                                     seen: "disk sector 9: expected 0xab, seen 0xee")])
    }
}

@Suite struct OverflowAlertCheckTests {
    @Test func oneAlertWhenTheLimitIsFirstReached() {
        let prediction = Prediction(alerts: .one)
        #expect(found { Checks.overflowAlert(prediction, observe([.alert(message: "limit")], for: prediction), into: &$0) } == [])
        let none = found { Checks.overflowAlert(prediction, observe(for: prediction), into: &$0) }
        #expect(none.map(\.check) == [.overflowAlert])
        #expect(none.first?.expected == "one alert: the persistent limit is reached for the first time on this connection")
        #expect(none.first?.seen == "0 alert(s)")
    }

    @Test func noAlertOtherwise() {
        let prediction = Prediction()
        let findings = found { Checks.overflowAlert(prediction, observe([.alert(message: "limit")], for: prediction), into: &$0) }
        #expect(findings.map(\.expected) == ["no alert"])
    }

    @Test func anAbortedRequestMayOrMayNotHaveAlerted() {
        let prediction = Prediction(alerts: .noneOrOne(vbd: 0))
        #expect(found { Checks.overflowAlert(prediction, observe(for: prediction), into: &$0) } == [])
        #expect(found { Checks.overflowAlert(prediction, observe([.alert(message: "limit")], for: prediction), into: &$0) } == [])
        let twice = observe([.alert(message: "limit"), .alert(message: "limit")], for: prediction)
        #expect(found { Checks.overflowAlert(prediction, twice, into: &$0) }.map(\.seen) == ["2 alert(s)"])
    }
}
