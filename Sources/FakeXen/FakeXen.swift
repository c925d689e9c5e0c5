// FakeXen
