def test_acme_agent_can_list_its_decisions(api):
    response = api.get("/decisions")
    assert response.status_code == 200
    assert response.json()["results"] == []
